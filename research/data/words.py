"""Word-vector corpora of any size, prepared once into word stores.

Word-vector corpora of any size: whitespace words prepared once into a store of
ids, then read a block at a time, in bounded memory (gensim's corpus_file and the
Stanford GloVe tools stream their corpora too).

The store (research/data/store.py's folder, lock and checks) holds every word
of the corpus, ranked by count (ties in order of first appearance, as gensim and
research/data/corpus.py rank them): words.txt and counts.bin; tokens.bin, the
ids in order (uint32); pieces.bin, where each sentence starts: a line, cut into
pieces of max_sentence words as gensim's LineSentence cuts text8's one line.
min_count and max_vocab apply when a run opens the store (the kept words are
the first ids), so one store serves every vocabulary.

A run reads the in-vocabulary words block by block (BLOCK raw words: one block
holds a 17M-word corpus whole), with the sentence each word belongs to; a
sentence's id is its piece's index, so context windows never cross a line.
"""
import concurrent.futures
import dataclasses
import os
import time
from typing import Callable

import numpy as np

from research.data import corpus as corpus_lib, sources as sources_lib, store as store_lib
from research.errors import UserError

BLOCK = 1 << 25


@dataclasses.dataclass(frozen=True)
class WordSpec:
  """A corpus of whitespace words: `segments()` yields (words, ends_line) pieces in
  order (corpus.py's reader); `fingerprint` names the source's contents."""
  name: str
  fingerprint: str
  segments: Callable = dataclasses.field(compare=False, repr=False)
  max_sentence: int = 10000
  total_bytes: int = 0

  def folder(self) -> str:
    return store_lib.folder_name(self.name, self.fingerprint, 'words',
                                 {'max_sentence': self.max_sentence, 'format': store_lib.FORMAT,
                                  'kind': 'words'})

  def open(self, path: str) -> 'WordStore':
    return WordStore(path)

  def build(self, tmp: str, progress: bool) -> dict:
    """One pass (the text read and split on a second thread): ids by first
    appearance into a scratch file, counted; then each id is replaced by its rank
    (a vectorized pass over the scratch file)."""
    bar = store_lib.Progress(f'preparing {self.name}', 0, progress, unit='M words', scale=1e6)
    first_id, pieces, piece_start, total = {}, [0], 0, 0
    counts = np.zeros(0, np.int64)
    scratch = os.path.join(tmp, 'first_ids.tmp')
    with open(scratch, 'wb') as out:
      for words, ends_line in (seg for group in store_lib.ahead(_groups(self.segments()))
                               for seg in group):
        if words:
          ids = np.fromiter((first_id.setdefault(w, len(first_id)) for w in words), np.uint32,
                            len(words))
          out.write(ids.tobytes())
          if len(first_id) > len(counts):
            counts = np.concatenate([counts, np.zeros(2 * len(first_id) - len(counts), np.int64)])
          counts += np.bincount(ids, minlength=len(counts))
          total += len(ids)
          # Pieces of max_sentence words, cut as the line grows: no line is held whole.
          while total - piece_start > self.max_sentence:
            piece_start += self.max_sentence
            pieces.append(piece_start)
        if ends_line and total > piece_start:
          pieces.append(total)
          piece_start = total
        bar.update(total)
    if not total:
      raise UserError(f'corpus {self.name!r} is empty: no words')
    counts = counts[:len(first_id)]
    order = np.argsort(-counts, kind='stable')  # by count; ties by first appearance.
    rank = np.empty(len(order), np.uint32)
    rank[order] = np.arange(len(order), dtype=np.uint32)
    with open(scratch, 'rb') as f, open(os.path.join(tmp, 'tokens.bin'), 'wb') as out:
      while chunk := f.read(4 * BLOCK):
        out.write(rank[np.frombuffer(chunk, np.uint32)].tobytes())
    os.remove(scratch)
    by_id = list(first_id)
    with open(os.path.join(tmp, 'words.txt'), 'w', encoding='utf-8') as f:
      f.write('\n'.join(by_id[i] for i in order) + '\n')
    counts[order].astype(np.int64).tofile(os.path.join(tmp, 'counts.bin'))
    np.asarray(pieces, np.int64).tofile(os.path.join(tmp, 'pieces.bin'))
    seconds = max(time.time() - bar.start, 1e-9)
    return {'kind': 'words', 'name': self.name,
            'fingerprint': self.fingerprint, 'max_sentence': self.max_sentence,
            'words': total, 'distinct': len(order), 'sentences': len(pieces) - 1,
            'summary': f'{total:,} words, {len(order):,} distinct, {len(pieces) - 1:,} '
                       f'sentences, {total / seconds / 1e6:.1f} M words/s'}


def _groups(segments, words: int = 1 << 20):
  """Segments in lists of about `words` words: one hand-over between threads a
  list, not a line, and a bounded one whatever the lines' lengths."""
  group, size = [], 0
  for segment in segments:
    group.append(segment)
    size += len(segment[0]) + 1
    if size >= words:
      yield group
      group, size = [], 0
  if group:
    yield group


class WordStore:
  """An open, checked word store."""

  def __init__(self, path: str):
    self.path = path
    self.meta = store_lib.check(path)
    with open(os.path.join(path, 'words.txt'), encoding='utf-8') as f:
      self.words = f.read().split('\n')[:-1]
    self.counts = np.fromfile(os.path.join(path, 'counts.bin'), np.int64)
    self.tokens = store_lib.TokenFile(os.path.join(path, 'tokens.bin'), np.uint32)
    self.pieces = np.memmap(os.path.join(path, 'pieces.bin'), np.int64, 'r')


def file_spec(path: str, max_sentence: int, errors: str = 'strict') -> WordSpec:
  """The corpus of the .txt / .gz files at `path` (a file, a folder or a glob)."""
  if errors not in ('strict', 'replace'):
    raise UserError(f'data.encoding_errors must be strict or replace, not {errors!r}')
  paths = sources_lib.files(path)
  return WordSpec(
      name=os.path.basename(path.rstrip('/*')) or 'corpus',
      fingerprint=sources_lib.fingerprint(paths),
      segments=lambda: (seg for p in paths for seg in corpus_lib.segments(p, errors)),
      max_sentence=max_sentence, total_bytes=sum(os.path.getsize(p) for p in paths))


def lines_spec(name: str, fingerprint: str, lines: Callable, max_sentence: int) -> WordSpec:
  """A corpus of text lines (e.g. reviews), `lines()` yielding them in order."""
  return WordSpec(name=name, fingerprint=fingerprint,
                  segments=lambda: ((line.split(), True) for line in lines()),
                  max_sentence=max_sentence)


class Words:
  """The in-vocabulary words of a store, for a vocabulary of min_count and
  max_vocab (and, for online training, a base vocabulary whose words keep
  their ids): words, counts, and blocks of (ids, sentence ids)."""

  def __init__(self, store: WordStore, min_count: int, max_vocab: int = 0, base=None):
    self.store = store
    self.raw_words = int(store.meta['words'])
    counts = store.counts
    if base is None:
      kept = np.flatnonzero(counts >= min_count)
      kept = kept[:max_vocab] if max_vocab else kept
    else:  # base words first, whatever their count here; then new words by count.
      base_words, base_counts = base
      index = {w: i for i, w in enumerate(store.words)}
      at = np.array([index.get(w, -1) for w in base_words], np.int64)
      is_base = np.zeros(len(counts), bool)
      is_base[at[at >= 0]] = True
      new = np.flatnonzero(~is_base & (counts >= min_count))
      if max_vocab:
        new = new[:max(max_vocab - len(base_words), 0)]
      kept = np.concatenate([at, new])
    if not len(kept):
      raise UserError(f'corpus {store.meta["name"]!r}: no word occurs min_count={min_count} '
                      f'times ({self.raw_words} words, {len(counts)} distinct); lower '
                      'data.min_count')
    self.remap = np.full(len(counts), -1, np.int32)
    self.remap[kept[kept >= 0]] = np.flatnonzero(kept >= 0).astype(np.int32)
    self.words = (list(base[0]) + [store.words[i] for i in kept[len(base[0]):]]
                  if base is not None else [store.words[i] for i in kept])
    self.counts = np.where(kept >= 0, counts[np.maximum(kept, 0)], 0).astype(np.int64)
    if base is not None:
      self.counts[:len(base[1])] += np.asarray(base[1], np.int64)
    self.num_blocks = max(1, -(-self.raw_words // BLOCK))
    self.sentences = len(store.pieces) - 1

  @property
  def vocab_size(self) -> int:
    return len(self.words)

  def block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32, sentence ids int32) of the in-vocabulary words among raw words
    [b * BLOCK, (b + 1) * BLOCK)."""
    lo, hi = b * BLOCK, min((b + 1) * BLOCK, self.raw_words)
    ids = self.remap[self.store.tokens.read(lo, hi)]
    pieces = self.store.pieces
    first, last = (int(np.searchsorted(pieces, x, side='right')) - 1 for x in (lo, hi - 1))
    bounds = np.clip(np.asarray(pieces[first:last + 2]), lo, hi)
    sentence = np.repeat(np.arange(first, last + 1, dtype=np.int32), np.diff(bounds))
    keep = ids >= 0
    return ids[keep], sentence[keep]


def open_words(spec: WordSpec, store_dir: str, min_count: int, max_vocab: int = 0,
               base=None) -> Words:
  return Words(store_lib.open_or_prepare(spec, store_lib.root(store_dir)), min_count,
               max_vocab, base)


class Subsampled:
  """word2vec's stream of an epoch: each block's in-vocabulary words, a word kept
  with probability keep[id] (the frequent ones subsampled), drawn from
  (seed, epoch, block) alone. range(epoch, lo, hi) reads positions [lo, hi) of
  the epoch's stream across blocks; the next block (up to last_epoch's) is made
  on a worker thread once the stream is half way through the one before, so the
  device does not wait for it."""

  def __init__(self, words: Words, keep: np.ndarray, seed: int, last_epoch: int):
    self.words, self.keep, self.seed, self.last_epoch = words, keep, seed, last_epoch
    self.lengths = {}  # (epoch, block) -> words kept.
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='block-ahead')
    self._made = {}  # (epoch, block) -> its future, the last few.

  def _make(self, epoch: int, b: int):
    ids, sentence = self.words.block(b)
    # Block 0 draws from (seed, epoch), so a corpus of one block is subsampled as
    # a whole corpus always was.
    rng = np.random.default_rng([self.seed, epoch] + ([b] if b else []))
    kept = rng.random(len(ids), dtype=np.float32) < self.keep[ids]
    self.lengths[epoch, b] = int(kept.sum())
    return ids[kept], sentence[kept]

  def block(self, epoch: int, b: int, wait: bool = True):
    """(ids, sentence ids) kept in block b of the epoch, made on the worker thread."""
    if (epoch, b) not in self._made:
      self._made[epoch, b] = self._pool.submit(self._make, epoch, b)
      while len(self._made) > 3:
        self._made.pop(next(iter(self._made)))
    return self._made[epoch, b].result() if wait else None

  def _length(self, epoch: int, b: int) -> int:
    if (epoch, b) not in self.lengths:
      self.block(epoch, b)
    return self.lengths[epoch, b]

  def range(self, epoch: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, sentence ids) at positions [lo, hi) of the epoch's stream, fewer where
    the epoch ends before hi."""
    parts, start = [], 0
    for b in range(self.words.num_blocks):
      if start >= hi:
        break
      n = self._length(epoch, b)
      if start + n > lo:
        ids, sentence = self.block(epoch, b)
        cut = slice(max(lo - start, 0), min(hi - start, n))
        parts.append((ids[cut], sentence[cut]))
        if 2 * cut.stop > n:  # half way through: make the next block meanwhile.
          following = (epoch, b + 1) if b + 1 < self.words.num_blocks else (epoch + 1, 0)
          if following[0] <= self.last_epoch:
            self.block(*following, wait=False)
      start += n
    if not parts:
      return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
