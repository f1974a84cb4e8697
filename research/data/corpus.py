"""Plain-text corpora for word embeddings: segments and sampling.

Plain-text corpora for word embeddings: their files, their words as a stream,
and word2vec's sampling distributions.

A corpus is one or many `.txt` / `.gz` files (a path, a directory or a glob).
Each line is a sentence, split on whitespace, read a block at a time
(segments); research/data/words.py prepares it into a store once. word2vec
drops the words outside the vocabulary, as the C tool and gensim do, and
subsamples the frequent ones (keep_probabilities).
"""
import gzip
import io
import zipfile

import numpy as np

from research.data import text_files
from research.errors import UserError

CHUNK_BYTES = 1 << 24  # read 16 MB at a time: memory stays bounded for any corpus size.


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


def segments(path, errors):
  """Yields (words, ends_line): each line's words, in several pieces when the line
  is longer than a block (text8 is one 100 MB line)."""
  try:
    with _open_text(path, errors) as f:
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


def _open_text(path: str, errors: str):
  """A text stream of a plain, gzip or zip (its first member: text8.zip) file."""
  if path.endswith('.zip'):
    archive = zipfile.ZipFile(path)
    return io.TextIOWrapper(archive.open(archive.namelist()[0]), encoding='utf-8',
                            errors=errors, newline='')
  opener = gzip.open if path.endswith('.gz') else open
  return opener(path, 'rt', encoding='utf-8', errors=errors, newline='')
