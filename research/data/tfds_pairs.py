"""Parallel text from TFDS builders: Multi30k, Tatoeba and WMT14.

Parallel text from TFDS builders: seqlab's own (Multi30k, Tatoeba: a local copy
or a download) and TFDS's wmt14_translate (a download), prepared once as
array_record and read through TFDS data sources, without TensorFlow.

Imported only when a run names one of them, so other runs import no TFDS.
"""
from absl import logging

from research.data import local_path, prepared_builder, prepared_data_dir
from research.data import multi30k, tatoeba
from research.data.parallel import CHUNK_PAIRS, PairsSpec, Split, spec_settings
from research.errors import UserError

BUILDERS = {'multi30k': multi30k.Multi30k, 'tatoeba': tatoeba.Tatoeba}
WMT14_PAIRS = ('de-en', 'en-de', 'fr-en', 'en-fr')


def names() -> tuple:
  return tuple(BUILDERS) + ('wmt14',)


class _Wmt14:
  """TFDS's wmt14_translate, whose records are keyed by language: data.pair en-de
  reads its de-en config with the sides swapped."""

  def __init__(self, pair: str, data_dir: str):
    from tensorflow_datasets.translate import wmt14  # pylint: disable=g-import-not-at-top
    src, tgt = pair.split('-')
    config = f'{src}-{tgt}' if src != 'en' else f'{tgt}-{src}'
    self.keys = (src, tgt)
    self.builder = prepared_builder(lambda: wmt14.Wmt14Translate(
        config=config, data_dir=data_dir or None, file_format='array_record'))


def open_builder(name: str, pair: str, local_dir: str = '', data_dir: str = ''):
  """(the prepared builder, the record keys of source and target)."""
  if name == 'wmt14':
    if pair not in WMT14_PAIRS:
      raise UserError(f'wmt14 has no language pair {pair!r}; known: {", ".join(WMT14_PAIRS)}')
    wmt = _Wmt14(pair, data_dir)
    return wmt.builder, wmt.keys
  cls = BUILDERS[name]
  local_dir = local_path(local_dir, cls.LOCAL_NAME)
  known = [c.name for c in cls.BUILDER_CONFIGS]
  if pair not in known:
    raise UserError(f'{name} has no language pair {pair!r}; known: {", ".join(known)}')
  builder = prepared_builder(lambda: cls(
      config=pair, local_dir=local_dir, data_dir=prepared_data_dir(data_dir, local_dir),
      file_format='array_record'))
  return builder, ('source', 'target')


def read_chunks(builder, keys, split: str, chunk: int = CHUNK_PAIRS):
  """(sources, targets) chunks of a prepared split, in order."""
  source = builder.as_data_source(split)
  for start in range(0, len(source), chunk):
    records = source.__getitems__(list(range(start, min(start + chunk, len(source)))))
    yield ([r[keys[0]].decode('utf-8') for r in records],
           [r[keys[1]].decode('utf-8') for r in records])


def read_split(builder, keys, split: str) -> Split:
  sources, targets = [], []
  for s, t in read_chunks(builder, keys, split):
    sources += s
    targets += t
  return Split(sources, targets)


def load_tfds(name: str, pair: str, local_dir: str = '', data_dir: str = ''):
  """({split: Split} of every split, the prepared folder): the whole dataset as strings."""
  builder, keys = open_builder(name, pair, local_dir, data_dir)
  splits = {split: read_split(builder, keys, split) for split in builder.info.splits}
  logging.info('%s %s: %s from %s', name, pair,
               ', '.join(f'{k} {len(v.sources)}' for k, v in splits.items()), builder.data_dir)
  return splits, str(builder.data_dir)


def spec(d):
  """(the training pairs' store spec, {split: Split} of the evaluation splits)."""
  builder, keys = open_builder(d.name, d.pair, d.path, d.data_dir)
  splits = {split: read_split(builder, keys, split) for split in builder.info.splits
            if split != 'train'}
  train = builder.info.splits['train']
  logging.info('%s %s: train %d pairs, %s, from %s', d.name, d.pair, train.num_examples,
               ', '.join(f'{k} {len(v.sources)}' for k, v in splits.items()), builder.data_dir)
  return PairsSpec(name=f'{d.name}_{d.pair}', fingerprint=_fingerprint(builder),
                   read=lambda: read_chunks(builder, keys, 'train'),
                   settings=spec_settings(d), total=train.num_examples), splits


def _fingerprint(builder) -> str:
  """The prepared folder (it names the local copy's fingerprint, the version and
  the config) and the training split's size."""
  import hashlib  # pylint: disable=g-import-not-at-top
  info = builder.info.splits['train']
  return hashlib.sha256(f'{builder.data_dir}:{info.num_examples}:{info.num_bytes}'.encode()
                        ).hexdigest()[:16]
