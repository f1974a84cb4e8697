"""Plain-text corpora for word embeddings: read, count, encode in one pass.

A corpus is one or many `.txt` / `.gz` files (a path, a directory or a glob).
Each line is a sentence, split on whitespace; a line longer than
`max_sentence` words is cut into pieces, as gensim's LineSentence and
Text8Corpus do (text8 is one 17M-word line). Context windows never cross a
sentence boundary.

The vocabulary keeps words with count >= min_count, at most max_vocab of the
most frequent, in descending count (ties in order of first appearance, as
gensim sorts them); words outside it are dropped from the token stream, as the
word2vec C tool and gensim do.
"""
import dataclasses
import glob
import gzip
import os

import numpy as np

from research.data import text_files
from research.errors import UserError

CHUNK_BYTES = 1 << 24  # read 16 MB at a time: memory stays bounded for any corpus size.


@dataclasses.dataclass
class Corpus:
  words: list[str]        # the vocabulary, most frequent first.
  counts: np.ndarray      # [V] int64, counts in the raw text.
  tokens: np.ndarray      # [N] int32, in-vocabulary tokens in order.
  starts: np.ndarray      # [S + 1] int64, sentence boundaries into tokens.
  raw_words: int          # words read, before dropping rare ones.

  @property
  def vocab_size(self) -> int:
    return len(self.words)


def files(path: str) -> list[str]:
  """A file, a directory (its .txt / .gz files, sorted) or a glob pattern."""
  if os.path.isdir(path):
    found = sorted(p for p in glob.glob(os.path.join(path, '*'))
                   if p.endswith(('.txt', '.gz')) and os.path.isfile(p))
  elif os.path.isfile(path):
    found = [path]
  else:
    found = sorted(p for p in glob.glob(path) if os.path.isfile(p))
  if not found:
    raise UserError(f'corpus {path!r}: no such file, or no .txt / .gz files there')
  return found


def read(path: str, min_count: int = 5, max_vocab: int = 0, max_sentence: int = 10000,
         errors: str = 'strict', base: tuple | None = None) -> Corpus:
  """errors: 'strict' fails on bytes that are not UTF-8, naming the file; 'replace'
  reads them as U+FFFD."""
  if errors not in ('strict', 'replace'):
    raise UserError(f'data.encoding_errors must be strict or replace, not {errors!r}')
  names = files(path)
  segments = (seg for name in names for seg in _segments(name, errors))
  return build(segments, f'corpus {path!r}', min_count, max_vocab, max_sentence,
               f' in {", ".join(names)}', base)


def from_lines(lines, what: str, min_count: int = 5, max_vocab: int = 0,
               max_sentence: int = 10000, base: tuple | None = None) -> Corpus:
  """The same from an iterable of text lines (e.g. a TFDS split)."""
  return build(((line.split(), True) for line in lines), what, min_count, max_vocab,
               max_sentence, base=base)


def build(segments, what: str, min_count: int, max_vocab: int, max_sentence: int,
          where: str = '', base: tuple | None = None) -> Corpus:
  """segments: (words, ends_line) pieces, in order.

  base = (words, counts) of an existing vocabulary, for online training (gensim's
  build_vocab(update=True)): its words keep their ids whatever their count here,
  new words that reach min_count follow them, and counts add up.
  """
  base_words, base_counts = base if base is not None else ([], np.zeros(0, np.int64))
  first_id = {w: i for i, w in enumerate(base_words)}  # then in order of first appearance.
  pieces, lengths, line = [], [], []
  for words, ends_line in segments:
    if words:
      line.append(np.fromiter((first_id.setdefault(w, len(first_id)) for w in words),
                              np.int32, len(words)))
    if ends_line and line:
      ids, line = np.concatenate(line), []
      for start in range(0, len(ids), max_sentence):
        pieces.append(ids[start:start + max_sentence])
        lengths.append(len(pieces[-1]))
  raw = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
  if not len(raw):
    raise UserError(f'{what} is empty: no words{where}')
  counts = np.bincount(raw, minlength=len(first_id)).astype(np.int64)
  counts[:len(base_words)] += base_counts
  new = len(base_words) + np.argsort(-counts[len(base_words):], kind='stable')
  kept = np.concatenate([np.arange(len(base_words)), new[counts[new] >= min_count]])
  if max_vocab:
    kept = kept[:max(max_vocab, len(base_words))]
  if not len(kept):
    raise UserError(f'{what}: no word occurs min_count={min_count} times '
                    f'({len(raw)} words, {len(first_id)} distinct); lower data.min_count')
  remap = np.full(len(first_id), -1, np.int32)
  remap[kept.astype(np.int64)] = np.arange(len(kept), dtype=np.int32)
  by_id = list(first_id)
  mapped = remap[raw]
  keep = mapped >= 0
  # Sentence boundaries after dropping: count the kept tokens of each piece (pieces are
  # never empty), which is cheaper than a cumsum over every token.
  piece_starts = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64)])
  kept_per_piece = np.add.reduceat(keep.view(np.uint8), piece_starts, dtype=np.int64)
  starts = np.concatenate([[0], np.cumsum(kept_per_piece)])
  return Corpus(words=[by_id[i] for i in kept], counts=counts[kept].astype(np.int64),
                tokens=mapped[keep], starts=starts, raw_words=len(raw))


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
  """word2vec's subsampling of frequent words: keep a word of count c with
  probability (sqrt(c / t) + 1) * t / c, t = sample * total (capped at 1)."""
  counts = np.asarray(counts, np.float64)
  if not sample:
    return np.ones(len(counts))
  t = sample * counts.sum()
  return np.minimum(1.0, (np.sqrt(counts / t) + 1.0) * t / counts)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
  """Negative samples are drawn from the unigram distribution to the 3/4 power."""
  p = np.asarray(counts, np.float64) ** power
  return p / p.sum()


def _segments(path, errors):
  """Yields (words, ends_line): each line's words, in several pieces when the line
  is longer than a block (text8 is one 100 MB line)."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rt', encoding='utf-8', errors=errors, newline='') as f:
      tail = f.read(1).lstrip('\ufeff')  # a byte-order mark is not a word.
      while block := f.read(CHUNK_BYTES):
        block = tail + block
        cut = max(block.rfind(c) for c in ' \n\t\r')  # the last whole word ends here.
        block, tail = block[:cut + 1], block[cut + 1:]
        lines = block.split('\n')
        for text in lines[:-1]:
          yield text.split(), True
        yield lines[-1].split(), False  # the line goes on in the next block.
      yield tail.split(), True
  except UnicodeDecodeError as e:
    raise UserError(f'{path} is not valid UTF-8 ({e.reason}); '
                    'set data.encoding_errors=replace to read it anyway') from None
  except text_files.READ_ERRORS as e:
    raise UserError(f'could not read {path}: {e}') from None
