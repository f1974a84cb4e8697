"""The IMDB archive as a TFDS builder (imported only by runs that need it).

The IMDB archive (aclImdb v1, the one TFDS's imdb_reviews downloads) as a TFDS
builder with ids and ratings kept, prepared once as array_record and read without
TensorFlow. research/data/imdb.py turns its records into Reviews."""
import re
import tarfile

import numpy as np
import tensorflow_datasets as tfds

from research.data import prepared_builder, prepared_data_dir, prepared_records

URL = 'https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz'


class ImdbReviews(tfds.core.GeneratorBasedBuilder):
  """aclImdb v1: the archive TFDS's imdb_reviews uses, with ids and ratings kept."""
  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, archive: str = '', **kwargs):
    self.archive = archive  # a local aclImdb_v1.tar.gz instead of the download.
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'id': tfds.features.Text(), 'text': tfds.features.Text(),
            'label': tfds.features.Scalar(np.int32)}),
        homepage='https://ai.stanford.edu/~amaas/data/sentiment/')

  def _split_generators(self, dl_manager):
    archive = self.archive or dl_manager.download(URL)
    return {s: self._generate_examples(archive, s) for s in ('train', 'test', 'unsup')}

  def _generate_examples(self, archive, split):
    folder, classes = ('train', ('unsup',)) if split == 'unsup' else (split, ('pos', 'neg'))
    pattern = re.compile(rf'aclImdb/{folder}/({"|".join(classes)})/(\d+_\d+)\.txt$')
    with tarfile.open(str(archive), 'r:gz') as tar:
      for member in tar:
        m = pattern.search(member.name)
        if m:
          text = tar.extractfile(member).read().decode('utf-8', errors='replace')
          label = {'pos': 1, 'neg': 0}.get(m.group(1), -1)
          yield f'{m.group(1)}_{m.group(2)}', {'id': m.group(2), 'text': text, 'label': label}


def records(split: str, data_dir: str, archive: str = '') -> list[dict]:
  """Every record of a split: {'id', 'text', 'label'} (bytes, bytes, int)."""
  builder = prepared_builder(lambda: ImdbReviews(
      archive=archive, data_dir=prepared_data_dir(data_dir, archive),
      file_format='array_record'))
  return prepared_records(builder, split)
