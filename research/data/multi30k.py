"""Multi30k (WMT16-18 multimodal translation, task 1) as a TFDS builder.

Online it downloads the raw files from the multi30k/dataset repository; offline
it reads the same files from a local directory (`--config.data.path`), holding
train.{de,en,fr}[.gz], val.*, test_2016_flickr.* and optionally
test_2017_flickr.* and test_2018_flickr.* (directly or under raw/). Prepared
data is array_record, read through TFDS data sources without TensorFlow.
"""
import dataclasses

import tensorflow_datasets as tfds

from research.data import text_files
from research.data.tfds_base import ParallelTextBuilder
from research.errors import UserError

URL = 'https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/'
SPLITS = {  # seqlab's split name -> file stem
    'train': 'train', 'validation': 'val', 'test2016': 'test_2016_flickr',
    'test2017': 'test_2017_flickr', 'test2018': 'test_2018_flickr'}
REQUIRED = ('train', 'validation', 'test2016')
PAIRS = (('de', 'en'), ('en', 'de'), ('fr', 'en'), ('en', 'fr'))
LAYOUT = ('train.{de,en,fr}[.gz], val.*, test_2016_flickr.* (test_2017_flickr.*, '
          'test_2018_flickr.* optional), directly in the directory or under raw/')


@dataclasses.dataclass
class Multi30kConfig(tfds.core.BuilderConfig):
  source: str = 'de'
  target: str = 'en'


class Multi30k(ParallelTextBuilder):
  """Multi30k image-caption translations; pairs de-en, en-de, fr-en, en-fr."""
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [Multi30kConfig(name=f'{s}-{t}', source=s, target=t) for s, t in PAIRS]
  HOMEPAGE = 'https://github.com/multi30k/dataset'
  LOCAL_NAME = 'multi30k'

  def _split_generators(self, dl_manager):
    langs = (self.builder_config.source, self.builder_config.target)
    if self.local_dir:
      text_files.require_dir(self.local_dir, 'multi30k', LAYOUT)
      files = {}
      for split, stem in SPLITS.items():
        found = [text_files.find(self.local_dir, f'{stem}.{lang}') for lang in langs]
        if all(found):
          files[split] = found
        elif split in REQUIRED:
          missing = f'{stem}.{langs[found.index(None)]}[.gz]'
          raise UserError(f'multi30k: {missing} is missing from {self.local_dir}; '
                          f'expected {LAYOUT}')
    else:
      wanted = list(SPLITS)  # every split exists upstream for de, en and fr.
      urls = {f'{s}.{lang}': f'{URL}{SPLITS[s]}.{lang}.gz' for s in wanted for lang in langs}
      paths = dl_manager.download(urls)
      files = {s: [str(paths[f'{s}.{lang}']) for lang in langs] for s in wanted}
    return {split: self._generate_examples(_read_pairs(*paths)) for split, paths in files.items()}


def _read_pairs(source_path, target_path):
  sources = text_files.read_lines(source_path)
  targets = text_files.read_lines(target_path)
  if len(sources) != len(targets):
    raise UserError(f'multi30k: {source_path} has {len(sources)} lines but {target_path} '
                    f'has {len(targets)}')
  return list(zip(sources, targets))
