"""GloVe's co-occurrence counts, prepared once in bounded memory.

GloVe's co-occurrence counts: X[i, j] = sum over occurrences of word j within
`window` words of word i (either side, inside one sentence) of 1 / distance.

Counting streams the corpus and sorts instead of hashing: each block of the
stream (words.Words.block: in-vocabulary ids with their sentence ids) is cut
into parts of `block_tokens` center words; a part's pairs become int64 keys
(pair, distance) that np.sort orders (fast: no argsort, the weight 1/d is read
back from the key); runs of equal keys give the counts. The parts' (pair,
weight) lists are merged two at a time, each with one of similar size (as a
merge sort does), so memory is a few times the number of distinct pairs, never
the number of raw pairs (17M words x 15 distances here). With memory_mb, the
Stanford tools' -memory: when the merged lists pass it, they are merged into
one sorted run written to spill_dir, and the runs are merged at the end a key
range at a time. Parts are counted by `threads` threads (numpy's sort releases
the GIL). A symmetric window counts each unordered pair once and mirrors it at
the end.
"""
import concurrent.futures
import dataclasses
import hashlib
import os
import shutil
import time

import numpy as np

from research.data import store as store_lib

BLOCK_TOKENS = 1 << 20   # ~1M center words per part: 15M keys (120 MB) at window 15.
MERGE_KEYS = 1 << 22     # keys a run gives to each key range of the final merge.


def count(blocks, vocab_size: int, window: int = 15, symmetric: bool = True,
          block_tokens: int = BLOCK_TOKENS, threads: int = 2, memory_mb: int = 0,
          spill_dir: str = ''):
  """blocks: (ids, sentence ids) of the stream, in order. -> (rows int32 [N], cols
  int32 [N], values float32 [N]): each (row, col) once, sorted by (row, col); with
  a symmetric window, the pairs row <= col sorted and then their mirror images
  (row > col) in the same order."""
  chunks = count_keys(blocks, vocab_size, window, symmetric, block_tokens, threads,
                      memory_mb, spill_dir)
  parts = list(entries(chunks, vocab_size, symmetric))
  return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def entries(chunks, vocab_size: int, symmetric: bool):
  """count's (rows, cols, values) a chunk at a time, from chunks() (count_keys): with
  a symmetric window, every pair, then (a second pass) the mirror images of those
  off the diagonal (a word beside itself counts from both sides)."""
  yield np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
  for keys, values in chunks():
    rows, cols = (keys // vocab_size).astype(np.int32), (keys % vocab_size).astype(np.int32)
    values = values.astype(np.float32)
    if symmetric:
      values[rows == cols] *= 2
    yield rows, cols, values
  if symmetric:
    for keys, values in chunks():
      rows, cols = (keys // vocab_size).astype(np.int32), (keys % vocab_size).astype(np.int32)
      off = rows != cols
      yield cols[off], rows[off], values.astype(np.float32)[off]


def count_keys(blocks, vocab_size: int, window: int = 15, symmetric: bool = True,
               block_tokens: int = BLOCK_TOKENS, threads: int = 2, memory_mb: int = 0,
               spill_dir: str = ''):
  """chunks() -> the counts as sorted unique int64 pair keys (row * vocab_size +
  col) with their float64 values, a key range at a time (callable again: the
  mirror pass reads them twice). Past memory_mb, the ranges are merged from the
  spilled runs as they are read, so no more than a range is held."""
  stack, runs = [], []  # sorted (keys, values) parts, each under half the one before.
  limit = memory_mb * (1 << 20)

  def add(part):
    stack.append(part)
    while len(stack) > 1 and 2 * len(stack[-1][0]) > len(stack[-2][0]):
      stack.append(_merge(*stack.pop(-2), *stack.pop()))
    # Half the limit: merging the lists into one run holds its inputs and output at once.
    if limit and sum(k.nbytes + v.nbytes for k, v in stack) > limit // 2:
      runs.append(_spill(_collapse(stack), spill_dir, len(runs)))
      stack.clear()

  previous = (np.zeros(0, np.int32), np.zeros(0, np.int32))
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    for ids, sentence in blocks:
      # The block, after the last `window` words of the one before (context only).
      tokens = np.concatenate([previous[0][-window:], ids])
      sentences = np.concatenate([previous[1][-window:], sentence])
      first = len(tokens) - len(ids)
      los = list(range(first, len(tokens), block_tokens))
      part = lambda lo: _block(tokens, sentences, lo, min(lo + block_tokens, len(tokens)),
                               window, vocab_size, symmetric)
      for i in range(0, len(los), threads):  # `threads` parts in flight: memory stays bounded.
        for counted in pool.map(part, los[i:i + threads]):
          add(counted)
      previous = (tokens, sentences)
  if runs:
    if stack:
      runs.append(_spill(_collapse(stack), spill_dir, len(runs)))
    stride = max(1 << 16, limit // 4 // (16 * len(runs)))  # a range holds ~limit / 4.
    return lambda: _merge_runs(runs, stride)
  keys, values = _collapse(stack)
  return lambda: ((keys[i:i + MERGE_KEYS], values[i:i + MERGE_KEYS])
                  for i in range(0, len(keys), MERGE_KEYS))


def _collapse(stack):
  while len(stack) > 1:
    stack.append(_merge(*stack.pop(-2), *stack.pop()))
  return stack[0] if stack else (np.zeros(0, np.int64), np.zeros(0))


def _spill(part, folder: str, index: int):
  """Writes a sorted run to `folder`; returns (its keys file, its values file, length)."""
  if not folder:
    raise ValueError('count(memory_mb=...) needs a spill_dir for its runs')
  os.makedirs(folder, exist_ok=True)
  paths = [os.path.join(folder, f'run{index}_{name}.bin') for name in ('keys', 'values')]
  for path, array in zip(paths, part):
    array.tofile(path)
  return paths[0], paths[1], len(part[0])


def _read(path: str, dtype, start: int, count: int) -> np.ndarray:
  """Elements [start, start + count) of a raw array file, read (not mapped: the
  pages of a mapped run would count as the process's memory)."""
  itemsize = np.dtype(dtype).itemsize
  return np.fromfile(path, dtype, count, offset=start * itemsize)


def _merge_runs(runs, stride: int = MERGE_KEYS):
  """The sorted runs' union, values added, yielded a key range at a time. The
  ranges end at every run's every stride-th key, so a range takes at most
  `stride` keys of each run, read when it is reached."""
  samples = [_read(k, np.int64, i, 1) for k, _, n in runs for i in range(0, n, stride)]
  bounds = np.unique(np.concatenate(samples)) if samples else np.zeros(0, np.int64)
  bounds = np.append(bounds[1:], np.iinfo(np.int64).max)
  start = [0] * len(runs)
  for bound in bounds:
    keys, values = [], []
    for i, (k_path, v_path, n) in enumerate(runs):
      k = _read(k_path, np.int64, start[i], min(stride, n - start[i]))
      stop = int(np.searchsorted(k, bound))
      keys.append(k[:stop])
      values.append(_read(v_path, np.float64, start[i], stop))
      start[i] += stop
    keys, values = np.concatenate(keys), np.concatenate(values)
    order = np.argsort(keys, kind='stable')
    keys, values = keys[order], values[order]
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, int)
    yield keys[first], (np.add.reduceat(values, first) if len(keys) else values)


def _block(tokens, sentence, lo, hi, window, vocab_size, symmetric):
  """The block's center words [lo, hi) -> (sorted unique pair keys, summed 1/d weights)."""
  bits = int(window).bit_length()
  keys = []
  for d in range(1, window + 1):
    # Pairs (context at p - d, center at p): each unordered pair once per distance.
    p = np.arange(max(lo, d), hi)
    p = p[sentence[p] == sentence[p - d]]
    left, right = tokens[p - d].astype(np.int64), tokens[p].astype(np.int64)
    if symmetric:
      left, right = np.minimum(left, right), np.maximum(left, right)
    keys.append((left * vocab_size + right) << bits | d)  # (left word, right word) as glove.c.
  keys = np.sort(np.concatenate(keys))
  if not len(keys):
    return keys, np.zeros(0)
  first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
  counts = np.diff(np.r_[first, len(keys)])
  keys = keys[first]
  weights = counts / (keys & ((1 << bits) - 1))
  pairs = keys >> bits
  first = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
  return pairs[first], np.add.reduceat(weights, first)


def _merge(keys, values, new_keys, new_values):
  """Two sorted unique key lists with values -> their sorted union, values added."""
  pos = np.searchsorted(keys, new_keys)
  hit = pos < len(keys)
  hit[hit] = keys[pos[hit]] == new_keys[hit]
  values = values.copy()
  values[pos[hit]] += new_values[hit]
  new_keys, new_values, pos = new_keys[~hit], new_values[~hit], pos[~hit]
  at = pos + np.arange(len(pos))  # where the new keys land in the union.
  old = np.ones(len(keys) + len(new_keys), bool)
  old[at] = False
  out_keys, out_values = np.empty(len(old), np.int64), np.empty(len(old))
  out_keys[at], out_values[at] = new_keys, new_values
  out_keys[old], out_values[old] = keys, values
  return out_keys, out_values


@dataclasses.dataclass(frozen=True)
class CooccurSpec:
  """The counts of a word store's corpus for one vocabulary, prepared once (as
  the Stanford tools write cooccurrence.bin): rows.bin, cols.bin (int32) and
  values.bin (float32), in count's order."""
  words: object = dataclasses.field(compare=False, repr=False)  # words.Words
  window: int = 15
  symmetric: bool = True
  memory_mb: int = 0

  def folder(self) -> str:
    store = self.words.store
    vocab = hashlib.sha256(np.asarray(self.words.remap).tobytes()).hexdigest()[:16]
    return store_lib.folder_name(
        store.meta['name'], store.meta['fingerprint'], 'cooccur',
        {'words': os.path.basename(store.path), 'vocabulary': vocab, 'window': self.window,
         'symmetric': self.symmetric, 'format': store_lib.FORMAT, 'kind': 'cooccur'})

  def open(self, path: str) -> 'Cooccurrences':
    return Cooccurrences(path)

  def build(self, tmp: str, progress: bool) -> dict:
    del progress
    started = time.time()
    c = self.words
    chunks = count_keys((c.block(b) for b in range(c.num_blocks)), c.vocab_size, self.window,
                        self.symmetric, memory_mb=self.memory_mb,
                        spill_dir=os.path.join(tmp, 'spill'))
    outs = [open(os.path.join(tmp, f'{n}.bin'), 'wb') for n in ('rows', 'cols', 'values')]
    n = 0
    try:
      for part in entries(chunks, c.vocab_size, self.symmetric):
        for out, array in zip(outs, part):
          out.write(array.tobytes())
        n += len(part[0])
    finally:
      for out in outs:
        out.close()
    del chunks
    shutil.rmtree(os.path.join(tmp, 'spill'), ignore_errors=True)
    seconds = time.time() - started
    return {'kind': 'cooccur', 'entries': n,
            'vocab_size': c.vocab_size, 'window': self.window, 'symmetric': self.symmetric,
            'memory_mb': self.memory_mb, 'count_seconds': round(seconds, 2),
            'summary': f'{n:,} nonzero entries over a vocabulary of {c.vocab_size:,} '
                       f'(window {self.window})'}


class Cooccurrences:
  """An open, checked co-occurrence store: rows, cols and values, memory-mapped."""

  def __init__(self, path: str):
    self.path = path
    self.meta = store_lib.check(path)
    self.rows, self.cols, self.values = (
        np.memmap(os.path.join(path, f'{n}.bin'), dtype, 'r')
        for n, dtype in (('rows', np.int32), ('cols', np.int32), ('values', np.float32)))
