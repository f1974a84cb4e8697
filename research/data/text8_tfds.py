"""text8 as a TFDS builder of 10,000-word pieces (word2vec's corpus with
data.name=text8), prepared once as array_record and read without TensorFlow."""
import os

import tensorflow_datasets as tfds
from absl import logging

from research.data import local_path, prepared_builder, prepared_data_dir, prepared_records
from research.data.text8 import LOCAL_NAMES, URL, WORDS_PER_EXAMPLE, read_text
from research.errors import UserError


class Text8(tfds.core.GeneratorBasedBuilder):
  """text8: 17M words of lowercased Wikipedia text, one line."""
  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, local_dir: str = '', **kwargs):
    self.local_dir = local_dir
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({'text': tfds.features.Text()}),
        homepage='http://mattmahoney.net/dc/textdata.html')

  def _split_generators(self, dl_manager):
    if self.local_dir:
      found = [os.path.join(self.local_dir, n) for n in LOCAL_NAMES
               if os.path.isfile(os.path.join(self.local_dir, n))]
      if not found:
        raise UserError(f'text8: none of {", ".join(LOCAL_NAMES)} in {self.local_dir}')
      path = found[0]
    else:
      path = os.path.join(dl_manager.download_and_extract(URL), 'text8')
    return {'train': self._generate_examples(path)}

  def _generate_examples(self, path):
    words = read_text(path).split()
    for i in range(0, len(words), WORDS_PER_EXAMPLE):
      yield i // WORDS_PER_EXAMPLE, {'text': ' '.join(words[i:i + WORDS_PER_EXAMPLE])}


def load_lines(local_dir: str = '', data_dir: str = ''):
  """Prepares text8 once (array_record) and returns its pieces as strings; the local
  copy defaults to $SEQLAB_DATA/text8."""
  local_dir = local_path(local_dir, 'text8')
  builder = prepared_builder(lambda: Text8(
      local_dir=local_dir, data_dir=prepared_data_dir(data_dir, local_dir),
      file_format='array_record'))
  records = prepared_records(builder, 'train')
  logging.info('text8: %d pieces of %d words from %s', len(records), WORDS_PER_EXAMPLE,
               builder.data_dir)
  return [r['text'].decode('utf-8') for r in records]
