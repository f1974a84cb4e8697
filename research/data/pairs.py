"""Parallel text as splits of (source, target) strings, from TFDS builders."""
import dataclasses

import tensorflow_datasets as tfds
from absl import logging

from research.data import local_path, prepared_builder, prepared_data_dir, prepared_records
from research.errors import UserError


@dataclasses.dataclass(frozen=True)
class Split:
  sources: list[str]
  targets: list[str]


class ParallelTextBuilder(tfds.core.GeneratorBasedBuilder):
  """What the parallel-text builders share: a local directory for offline use,
  and {'source', 'target'} text features. Abstract, so TFDS does not register it."""
  HOMEPAGE = ''
  LOCAL_NAME = ''  # the local copy's folder under $SEQLAB_DATA.

  def __init__(self, *, local_dir: str = '', **kwargs):
    self.local_dir = local_dir
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(
            {'source': tfds.features.Text(), 'target': tfds.features.Text()}),
        supervised_keys=('source', 'target'), homepage=self.HOMEPAGE)

  def _generate_examples(self, pairs):
    for i, (source, target) in enumerate(pairs):
      yield i, {'source': source, 'target': target}


def builders():
  from research.data import multi30k, tatoeba  # pylint: disable=g-import-not-at-top
  return {'multi30k': multi30k.Multi30k, 'tatoeba': tatoeba.Tatoeba}


def load_tfds(name: str, pair: str, local_dir: str = '', data_dir: str = ''):
  """Prepares the dataset once (array_record) and returns ({split: Split}, prepared dir).

  `local_dir` holds the raw files for offline use (by default the builder's
  LOCAL_NAME under $SEQLAB_DATA); without one the builder downloads from the
  public URLs. `data_dir` is where TFDS keeps prepared data.
  """
  cls = builders()[name]
  local_dir = local_path(local_dir, cls.LOCAL_NAME)
  known = [c.name for c in cls.BUILDER_CONFIGS]
  if pair not in known:
    raise UserError(f'{name} has no language pair {pair!r}; known: {", ".join(known)}')
  builder = prepared_builder(lambda: cls(
      config=pair, local_dir=local_dir, data_dir=prepared_data_dir(data_dir, local_dir),
      file_format='array_record'))
  splits = {}
  for split in builder.info.splits:
    records = prepared_records(builder, split)
    splits[split] = Split([r['source'].decode('utf-8') for r in records],
                          [r['target'].decode('utf-8') for r in records])
  logging.info('%s %s: %s from %s', name, pair,
               ', '.join(f'{k} {len(v.sources)}' for k, v in splits.items()), builder.data_dir)
  return splits, str(builder.data_dir)
