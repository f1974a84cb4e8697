"""Parallel text: splits of (source, target) strings and the pairs store.

Parallel text: splits of (source, target) strings, and the training pairs as a
token store, prepared once and read by index at any corpus size.

Where pairs come from (data.name):
  dates, random      generated in memory from a seed (dates.py, synthetic.py)
  multi30k, tatoeba  TFDS builders (tfds_pairs.py) over a local copy, or downloaded
  wmt14              TFDS's wmt14_translate (downloads; validation newstest2013,
                     test newstest2014)
  parallel           local files in data.path: train.<src> and train.<tgt> (line i
                     of each a pair; .gz too) or train.tsv (source<TAB>target); the
                     evaluation sets by name (data.validation_split,
                     data.test_split) in the same layout, e.g. newstest2014.en and
                     newstest2014.de (Stanford's and fairseq's WMT14 layout)

A corpus's training pairs are tokenized once into a store (research/data/
store.py's folder, lock and checks): source.bin and target.bin hold every
pair's ids back to back (no </s>), source_offsets.bin and target_offsets.bin
where each pair starts, tokenizer_source/ and tokenizer_target/ the
vocabularies, learned from the first data.tokenizer_sample training pairs.
A run reads the rows of its batch by position; the evaluation sets are small
and held as strings.
"""
import dataclasses
import gzip
import os
import shutil
import time
from typing import Callable

import numpy as np

from research.data import sources as sources_lib, store as store_lib, text_files
from research.data import vocab as vocab_lib
from research.errors import UserError

CHUNK_PAIRS = 50_000
TOKENIZERS = ('char', 'word', 'sentencepiece')


@dataclasses.dataclass(frozen=True)
class Split:
  sources: list[str]
  targets: list[str]


class Pairs:
  """Token ids of pairs, ragged: each pair's source ids and target ids (no </s>)."""
  source_lengths: np.ndarray
  target_lengths: np.ndarray

  def __len__(self):
    return len(self.source_lengths)

  def rows(self, index) -> tuple[list, list]:
    raise NotImplementedError


class MemoryPairs(Pairs):
  def __init__(self, sources: list, targets: list):
    self.sources, self.targets = sources, targets
    self.source_lengths = np.array([len(s) for s in sources], np.int64)
    self.target_lengths = np.array([len(t) for t in targets], np.int64)

  def rows(self, index):
    return [self.sources[i] for i in index], [self.targets[i] for i in index]


class StoredPairs(Pairs):
  """A pairs store's ids, each row read with one pread a side."""

  def __init__(self, path: str, dtype):
    self.offsets = {side: np.fromfile(os.path.join(path, f'{side}_offsets.bin'), np.int64)
                    for side in ('source', 'target')}
    self.files = {side: store_lib.TokenFile(os.path.join(path, f'{side}.bin'), dtype)
                  for side in ('source', 'target')}
    self.source_lengths = np.diff(self.offsets['source'])
    self.target_lengths = np.diff(self.offsets['target'])

  def rows(self, index):
    out = []
    for side in ('source', 'target'):
      starts, file = self.offsets[side], self.files[side]
      out.append([file.read(int(starts[i]), int(starts[i + 1])) for i in index])
    return out[0], out[1]


def padded(seqs, max_len: int, add_eos: bool) -> tuple[np.ndarray, int]:
  """(ids [n, max_len] int32 padded with <pad>, texts truncated), as
  Vocab.encode_batch pads: a target ends with </s>, kept when it is cut."""
  ids = np.full((len(seqs), max_len), vocab_lib.PAD, np.int32)
  truncated = 0
  for row, seq in enumerate(seqs):
    n = len(seq)
    if add_eos:
      if n + 1 > max_len:
        truncated += 1
        n = max_len - 1
      ids[row, :n] = seq[:n]
      ids[row, n] = vocab_lib.EOS
    else:
      if n > max_len:
        truncated += 1
        n = max_len
      ids[row, :n] = seq[:n]
  return ids, truncated


def make_vocab(tokenizer: str, texts, vocab_size: int, model_type: str, folder: str):
  """A vocabulary learned from `texts`: characters, the vocab_size most frequent
  words, or SentencePiece (trained in `folder`)."""
  if tokenizer == 'char':
    return vocab_lib.CharVocab.from_texts(texts)
  if tokenizer == 'word':
    return vocab_lib.WordVocab.from_texts(texts, max_size=vocab_size)
  if tokenizer == 'sentencepiece':
    return vocab_lib.SentencePieceVocab.train(texts, vocab_size, model_type, folder)
  raise UserError(f'unknown data.tokenizer {tokenizer!r}; use {", ".join(TOKENIZERS)}')


def vocabularies(d, sources: list[str], targets: list[str], folder: str):
  """(source vocabulary, target vocabulary) learned from training texts; one joint
  vocabulary with data.shared_vocab (so embeddings can be shared)."""
  model_type, size = d.spm_model_type, d.vocab_size
  if d.shared_vocab:
    joint = make_vocab(d.tokenizer, sources + targets, size, model_type,
                       os.path.join(folder, 'tokenizer_joint'))
    return joint, joint
  return (make_vocab(d.tokenizer, sources, size, model_type,
                     os.path.join(folder, 'tokenizer_source')),
          make_vocab(d.tokenizer, targets, size, model_type,
                     os.path.join(folder, 'tokenizer_target')))


def encode_all(vocab, texts: list[str]) -> list[np.ndarray]:
  """Each text's ids; SentencePiece encodes on every core."""
  if isinstance(vocab, vocab_lib.SentencePieceVocab):
    return [np.asarray(ids, np.int32) for ids in vocab.sp.encode(texts, num_threads=_cores())]
  return [np.asarray(vocab.encode(t), np.int32) for t in texts]


def _cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


# --- the store of training pairs -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PairsSpec:
  """A corpus's training pairs and the tokenizer's settings: `read()` yields
  (sources, targets) chunks of strings in order."""
  name: str
  fingerprint: str
  read: Callable = dataclasses.field(compare=False, repr=False)
  settings: tuple = ()  # (key, value) pairs of the tokenizer's settings.
  total: int = 0        # pairs, where known: the progress line's ETA.

  def config(self) -> dict:
    return dict(self.settings)

  def folder(self) -> str:
    return store_lib.folder_name(self.name, self.fingerprint, self.config()['tokenizer'],
                                 {**self.config(), 'format': store_lib.FORMAT, 'kind': 'pairs'})

  def open(self, path: str) -> 'PairsStore':
    return PairsStore(path)

  def build(self, tmp: str, progress: bool) -> dict:
    d = _Settings(self.config())
    bar = store_lib.Progress(f'preparing {self.name}', self.total, progress, unit='k pairs',
                             scale=1e3)
    sample_src, sample_tgt = [], []
    for sources, targets in self.read():
      take = d.tokenizer_sample - len(sample_src)
      sample_src += sources[:take]
      sample_tgt += targets[:take]
      if len(sample_src) >= d.tokenizer_sample:
        break
    if not sample_src:
      raise UserError(f'{self.name}: the training split holds no pairs')
    learned = vocabularies(d, sample_src, sample_tgt, os.path.join(tmp, 'spm'))
    for side, vocab in zip(('source', 'target'), learned):
      vocab_lib.save(vocab, os.path.join(tmp, f'tokenizer_{side}'))
    vocabs = [vocab_lib.load(os.path.join(tmp, f'tokenizer_{side}'))
              for side in ('source', 'target')]
    dtype = vocab_lib.id_dtype(max(len(v) for v in vocabs))
    offsets = {'source': [0], 'target': [0]}
    done, started = 0, time.time()
    with open(os.path.join(tmp, 'source.bin'), 'wb') as src_out, \
         open(os.path.join(tmp, 'target.bin'), 'wb') as tgt_out:
      for chunk in store_lib.ahead(self.read()):
        for side, texts, vocab, out in zip(('source', 'target'), chunk, vocabs,
                                           (src_out, tgt_out)):
          ids = encode_all(vocab, texts)
          lengths = np.fromiter(map(len, ids), np.int64, len(ids))
          offsets[side].extend((offsets[side][-1] + np.cumsum(lengths)).tolist())
          if ids:
            out.write(np.concatenate(ids).astype(dtype).tobytes())
        done += len(chunk[0])
        bar.update(done)
    for side in ('source', 'target'):
      np.asarray(offsets[side], np.int64).tofile(os.path.join(tmp, f'{side}_offsets.bin'))
    shutil.rmtree(os.path.join(tmp, 'spm'), ignore_errors=True)
    seconds = max(time.time() - started, 1e-9)
    return {'kind': 'pairs', 'name': self.name,
            'fingerprint': self.fingerprint, 'tokenizer': self.config(), 'dtype': np.dtype(dtype).name,
            'pairs': done, 'source_tokens': offsets['source'][-1],
            'target_tokens': offsets['target'][-1],
            'vocab_sizes': [len(v) for v in vocabs],
            'summary': f'{done:,} pairs, {offsets["source"][-1]:,} + {offsets["target"][-1]:,} '
                       f'tokens, {done / seconds:,.0f} pairs/s'}


class PairsStore:
  """An open, checked pairs store: vocabularies and the training pairs' ids."""

  def __init__(self, path: str):
    self.path = path
    self.meta = store_lib.check(path)
    self.src_vocab = vocab_lib.load(os.path.join(path, 'tokenizer_source'))
    self.tgt_vocab = vocab_lib.load(os.path.join(path, 'tokenizer_target'))
    if vocab_lib.fingerprint(self.src_vocab) == vocab_lib.fingerprint(self.tgt_vocab):
      self.tgt_vocab = self.src_vocab  # one joint vocabulary: one object.
    self.pairs = StoredPairs(path, self.meta['dtype'])


class _Settings(dict):
  __getattr__ = dict.get


def spec_settings(d) -> tuple:
  """The data.* keys that shape a pairs store's contents."""
  keys = {'tokenizer': d.tokenizer, 'vocab_size': d.vocab_size,
          'spm_model_type': d.spm_model_type,
          'shared_vocab': bool(d.shared_vocab),
          'tokenizer_sample': d.tokenizer_sample}
  return tuple(sorted(keys.items()))


# --- local aligned files --------------------------------------------------------------


def local_layout(path: str, pair: str, split: str):
  """('files', [source path, target path]) or ('tsv', [path]) of a split in a folder
  of aligned files; None if neither is there."""
  src, tgt = _languages(pair)
  found = [text_files.find(path, f'{split}.{lang}', subdirs=('',)) for lang in (src, tgt)]
  if all(found):
    return 'files', found
  tsv = text_files.find(path, f'{split}.tsv', subdirs=('',))
  return ('tsv', [tsv]) if tsv else None


def _languages(pair: str) -> tuple[str, str]:
  src, sep, tgt = pair.partition('-')
  if not (sep and src and tgt):
    raise UserError(f'data.pair {pair!r}: expected SOURCE-TARGET language codes, e.g. en-de')
  return src, tgt


def read_local(path: str, pair: str, split: str, chunk: int = CHUNK_PAIRS, errors='strict'):
  """(sources, targets) chunks of a split in a folder of aligned files, streamed."""
  layout = local_layout(path, pair, split)
  if layout is None:
    src, tgt = _languages(pair)
    raise UserError(f'{path}: no {split}.{src} and {split}.{tgt} (or .gz), nor {split}.tsv; '
                    f'expected aligned files, line i of each one pair')
  kind, files = layout
  sources, targets = [], []
  for source, target in (_tsv_pairs(files[0], errors) if kind == 'tsv'
                         else _aligned_pairs(*files, errors)):
    sources.append(source)
    targets.append(target)
    if len(sources) == chunk:
      yield sources, targets
      sources, targets = [], []
  if sources:
    yield sources, targets


def _lines(path: str, errors: str):
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      for number, raw in enumerate(f, 1):
        try:
          yield raw.decode('utf-8', errors).rstrip('\r\n').removeprefix('\ufeff' if number == 1
                                                                        else '')
        except UnicodeDecodeError as e:
          raise UserError(f'{path}, line {number}: bytes that are not UTF-8 ({e.reason}); '
                          'data.encoding_errors=replace reads them as U+FFFD') from None
  except text_files.READ_ERRORS as e:
    raise UserError(f'could not read {path}: {e}') from None


def _aligned_pairs(source_path: str, target_path: str, errors: str):
  sources, targets = _lines(source_path, errors), _lines(target_path, errors)
  number = 0
  for number, source in enumerate(sources, 1):
    target = next(targets, None)
    if target is None:
      raise UserError(f'{target_path} has {number - 1} lines but {source_path} has more; '
                      'aligned files need one line per pair')
    yield source, target
  if next(targets, None) is not None:
    raise UserError(f'{source_path} has {number} lines but {target_path} has more; aligned '
                    'files need one line per pair')


def _tsv_pairs(path: str, errors: str):
  for number, line in enumerate(_lines(path, errors), 1):
    cols = line.split('\t')
    if len(cols) < 2:
      raise UserError(f'{path}, line {number}: expected source<TAB>target, got {line[:80]!r}')
    yield cols[0], cols[1]


def local_spec(d) -> PairsSpec:
  """The store spec of the training pairs of a folder of aligned files."""
  if not os.path.isdir(d.path or ''):
    raise UserError(f'data.path {d.path!r}: expected a folder of aligned files (train.<src> '
                    'and train.<tgt>, or train.tsv) for data.name=parallel')
  kind, files = local_layout(d.path, d.pair, 'train') or (None, None)
  if kind is None:
    list(read_local(d.path, d.pair, 'train'))  # the error line naming what is missing.
  errors = d.encoding_errors
  return PairsSpec(name=os.path.basename(os.path.normpath(d.path)) + f'_{d.pair}',
                   fingerprint=sources_lib.fingerprint(files),
                   read=lambda: read_local(d.path, d.pair, 'train', errors=errors),
                   settings=spec_settings(d))


def read_split(d, split: str) -> Split:
  """A (small) evaluation split of a folder of aligned files, whole."""
  sources, targets = [], []
  for s, t in read_local(d.path, d.pair, split, errors=d.encoding_errors):
    sources += s
    targets += t
  return Split(sources, targets)
