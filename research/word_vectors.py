"""Word vectors: the table, nearest-neighbour queries, and file formats.

WordVectors holds the words in descending frequency (as word2vec and gensim
order them, so "the 30k most frequent" is a prefix) and their vectors. Their
evaluation (analogies, similarity) is in research/evaluation/word_vectors.py.

Formats: word2vec text and binary (the C tool's, which gensim's
load_word2vec_format reads) and GloVe's text format (no header).
"""
import dataclasses
import gzip
import os

import numpy as np

from research.errors import UserError


@dataclasses.dataclass
class WordVectors:
  words: list[str]
  vectors: np.ndarray  # [V, D] float32, row i is words[i].

  def __post_init__(self):
    self.vectors = np.asarray(self.vectors, np.float32)
    if len(self.words) != len(self.vectors):
      raise ValueError(f'{len(self.words)} words but {len(self.vectors)} vectors')
    self.index = {w: i for i, w in enumerate(self.words)}
    self._unit = None

  @property
  def unit(self) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    if self._unit is None:
      norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
      self._unit = self.vectors / np.maximum(norms, 1e-12)
    return self._unit

  def nearest(self, positive, negative=(), topn=10, restrict=None):
    """gensim's most_similar: rank words by cosine with the mean of the unit
    vectors of `positive` minus those of `negative`, inputs excluded."""
    words = list(positive) + list(negative)
    missing = [w for w in words if w not in self.index]
    if missing:
      raise UserError(f'not in the vocabulary: {", ".join(missing)}')
    unit = self.unit[:restrict]
    query = (sum(self.unit[self.index[w]] for w in positive)
             - sum((self.unit[self.index[w]] for w in negative), np.zeros_like(unit[0])))
    scores = unit @ (query / max(np.linalg.norm(query), 1e-12))
    for w in words:
      if self.index[w] < len(unit):
        scores[self.index[w]] = -np.inf
    best = np.argsort(-scores)[:topn]
    return [(self.words[i], float(scores[i])) for i in best]


# ---- File formats.

def save(wv: WordVectors, path: str, fmt: str = 'word2vec'):
  """fmt: 'word2vec' (text with a 'V D' header), 'word2vec_binary' or 'glove'."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  if fmt not in ('word2vec', 'word2vec_binary', 'glove'):
    raise UserError(f'unknown vector format {fmt!r}; use word2vec, word2vec_binary or glove')
  header = '' if fmt == 'glove' else f'{len(wv.words)} {wv.vectors.shape[1]}\n'
  if fmt == 'word2vec_binary':  # as the C tool writes it: word, space, floats, newline.
    with open(tmp, 'wb') as f:
      f.write(header.encode())
      for word, vec in zip(wv.words, wv.vectors.astype('<f4')):
        f.write(word.encode() + b' ' + vec.tobytes() + b'\n')
  else:  # one %-format per row, not one per float: fewer Python calls.
    row = ' '.join(['%.6g'] * wv.vectors.shape[1])
    with open(tmp, 'w', encoding='utf-8', newline='\n') as f:
      f.write(header)
      f.writelines(word + ' ' + row % tuple(vec) + '\n'
                   for word, vec in zip(wv.words, wv.vectors.tolist()))
  os.replace(tmp, path)


def load(path: str, fmt: str | None = None) -> WordVectors:
  """Reads any of save()'s formats; fmt=None guesses from the file."""
  if not os.path.isfile(path):
    raise UserError(f'no such vector file: {path}')
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    data = f.read()
  first = data.split(b'\n', 1)[0].split()
  has_header = len(first) == 2 and all(t.isdigit() for t in first)
  if fmt is None:
    fmt = 'glove' if not has_header else (
        'word2vec' if _looks_like_text(data) else 'word2vec_binary')
  if fmt == 'word2vec_binary':
    return _load_binary(path, data)
  lines = data.decode('utf-8').splitlines()[1 if fmt == 'word2vec' else 0:]
  words, rows = [], []
  for n, line in enumerate(lines, 2 if fmt == 'word2vec' else 1):
    parts = line.rstrip().split(' ')
    if len(parts) < 2:
      continue
    try:
      rows.append(np.array(parts[1:], np.float32))
    except ValueError:
      raise UserError(f'{path}:{n}: a vector with a non-number in it') from None
    words.append(parts[0])
  if not rows or len({len(r) for r in rows}) != 1:
    raise UserError(f'{path}: empty, or rows of different lengths')
  return WordVectors(words, np.stack(rows))


def _looks_like_text(data: bytes) -> bool:
  second = data.split(b'\n', 2)[1] if data.count(b'\n') >= 1 else b''
  try:
    second.decode('utf-8')
    return all(_is_number(t) for t in second.split()[1:]) and len(second.split()) > 1
  except UnicodeDecodeError:
    return False


def _is_number(token: bytes) -> bool:
  try:
    float(token)
    return True
  except ValueError:
    return False


def _load_binary(path, data):
  header, _, body = data.partition(b'\n')
  size, dim = (int(t) for t in header.split())
  words, vectors, pos = [], np.empty((size, dim), np.float32), 0
  for i in range(size):
    while pos < len(body) and body[pos:pos + 1] in (b'\n', b' '):
      pos += 1  # the C tool ends each vector with a newline; gensim does not.
    end = body.find(b' ', pos)
    if end < 0 or end + 1 + 4 * dim > len(body):
      raise UserError(f'{path}: truncated at word {i} of {size}')
    words.append(body[pos:end].decode('utf-8', errors='replace'))
    vectors[i] = np.frombuffer(body, '<f4', dim, end + 1)
    pos = end + 1 + 4 * dim
  return WordVectors(words, vectors)
