"""text8 (Mahoney: the first 10^8 bytes of English Wikipedia, cleaned) as a TFDS builder.

Online it downloads text8.zip from mattmahoney.net; offline it reads `text8`,
`text8.zip` or `text8.gz` from a local directory (`--config.data.path` with
data.name=text8). Examples are 10,000-word pieces of the one long line, the
sentence length gensim's Text8Corpus uses. Prepared data is array_record, read
through TFDS data sources without TensorFlow.
"""
import os

import tensorflow_datasets as tfds
from absl import logging

from research.data import (local_path, prepared_builder, prepared_data_dir,
                           prepared_records, text_files)
from research.errors import UserError

URL = 'http://mattmahoney.net/dc/text8.zip'
WORDS_PER_EXAMPLE = 10000
LOCAL_NAMES = ('text8', 'text8.zip', 'text8.gz')


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
    words = _read_text(path).split()
    for i in range(0, len(words), WORDS_PER_EXAMPLE):
      yield i // WORDS_PER_EXAMPLE, {'text': ' '.join(words[i:i + WORDS_PER_EXAMPLE])}


def _read_text(path: str) -> str:
  path = str(path)
  return text_files.decode(text_files.read_bytes(path, 'text8' if path.endswith('.zip') else ''),
                           path)


def source_file(local_dir: str = '', data_dir: str = '') -> str:
  """The text8 file a prepared store reads: the local copy (data.path, else
  $SEQLAB_DATA/text8), or text8.zip downloaded once into data_dir."""
  local_dir = local_path(local_dir, 'text8')
  if local_dir:
    if os.path.isfile(local_dir):
      return local_dir
    for name in LOCAL_NAMES:
      if os.path.isfile(os.path.join(local_dir, name)):
        return os.path.join(local_dir, name)
    raise UserError(f'text8: none of {", ".join(LOCAL_NAMES)} in {local_dir}')
  root = data_dir or os.path.expanduser(os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))
  manager = tfds.download.DownloadManager(download_dir=os.path.join(root, 'downloads'))
  return str(manager.download(URL))


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
