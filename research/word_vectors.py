"""Word vectors: queries, analogy and similarity evaluation, and file formats.

WordVectors holds the words in descending frequency (as word2vec and gensim
order them, so "the 30k most frequent" is a prefix) and their vectors.

Evaluation follows gensim's KeyedVectors conventions, so numbers compare:
- analogies (questions-words.txt): a : b :: c : ?, lowercased, searched over
  the `restrict` most frequent words excluding a, b and c; a question with a
  word outside them is skipped and counted; accuracy = correct / answered,
  per section and in total. 3CosAdd ranks cos(x, b) - cos(x, a) + cos(x, c);
  3CosMul (Levy and Goldberg 2014) ranks cos'(x, b) cos'(x, c) / (cos'(x, a)
  + 1e-6) with cos' = (cos + 1) / 2.
- similarity (WordSim-353, SimLex-999): Spearman correlation between human
  scores and cosines over the pairs whose words are both known; the rest are
  counted as out of vocabulary.

Formats: word2vec text and binary (the C tool's, which gensim's
load_word2vec_format reads) and GloVe's text format (no header).
"""
import dataclasses
import gzip
import os

import numpy as np

from research.errors import UserError

# Questions scored at once: 256 x 30k floats (31 MB) per matrix, which stays
# close to the cache where larger chunks thrash it.
ANALOGY_CHUNK = 256


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


def read_analogies(path: str):
  """questions-words.txt -> [(section, [(a, b, c, d), ...])], lowercased."""
  sections = []
  for n, line in enumerate(_lines(path), 1):
    if not line.strip():
      continue
    if line.startswith(':'):
      sections.append((line[1:].strip(), []))
      continue
    parts = line.lower().split()
    if len(parts) != 4 or not sections:
      raise UserError(f'{path}:{n}: expected ": section" or four words, got {line!r}')
    sections[-1][1].append(tuple(parts))
  if not sections:
    raise UserError(f'{path}: no analogy sections found')
  return sections


def read_pairs(path: str):
  """WordSim-353 / SimLex-999 style: 'w1<TAB>w2<TAB>score' rows, '#' comments."""
  pairs = []
  for n, line in enumerate(_lines(path), 1):
    if not line.strip() or line.startswith('#'):
      continue
    parts = line.split('\t') if '\t' in line else line.split()
    try:
      pairs.append((parts[0].lower(), parts[1].lower(), float(parts[2])))
    except (IndexError, ValueError):
      raise UserError(f'{path}:{n}: expected "word1<TAB>word2<TAB>score", got {line!r}') from None
  if not pairs:
    raise UserError(f'{path}: no word pairs found')
  return pairs


def evaluate_analogies(wv: WordVectors, sections, restrict: int = 30000) -> dict:
  """{'3cosadd': acc, '3cosmul': acc, 'oov': skipped, 'answered': n,
  'sections': {name: {'3cosadd': acc, '3cosmul': acc, 'answered': n}}}."""
  unit = wv.unit[:restrict]
  vocab = {w: i for i, w in enumerate(wv.words[:restrict])}
  result = {'sections': {}}
  totals = {'3cosadd': 0, '3cosmul': 0, 'answered': 0, 'oov': 0}
  for name, questions in sections:
    known = [q for q in questions if all(w in vocab for w in q)]
    totals['oov'] += len(questions) - len(known)
    ids = np.array([[vocab[w] for w in q] for q in known], np.int64).reshape(-1, 4)
    correct = {'3cosadd': 0, '3cosmul': 0}
    for start in range(0, len(ids), ANALOGY_CHUNK):
      chunk = ids[start:start + ANALOGY_CHUNK]
      cos_a, cos_b, cos_c = (unit[chunk[:, j]] @ unit.T for j in range(3))
      rows = np.arange(len(chunk))[:, None]
      add = cos_b - cos_a
      add += cos_c
      # 3CosMul, ((b + 1) / 2) * ((c + 1) / 2) / ((a + 1) / 2 + 1e-6), in place.
      for cos in (cos_a, cos_b, cos_c):
        cos += 1
        cos /= 2
      cos_a += 1e-6
      mul = cos_b
      mul *= cos_c
      mul /= cos_a
      for method, scores in (('3cosadd', add), ('3cosmul', mul)):
        scores[rows, chunk[:, :3]] = -np.inf  # the question's own words are never answers.
        correct[method] += int((scores.argmax(1) == chunk[:, 3]).sum())
    result['sections'][name] = {
        m: correct[m] / len(known) if known else 0.0 for m in correct}
    result['sections'][name]['answered'] = len(known)
    for m in correct:
      totals[m] += correct[m]
    totals['answered'] += len(known)
  answered = max(totals['answered'], 1)
  result.update({m: totals[m] / answered for m in ('3cosadd', '3cosmul')},
                answered=totals['answered'], oov=totals['oov'])
  return result


def evaluate_similarity(wv: WordVectors, pairs, restrict: int | None = None) -> dict:
  """{'spearman': rho, 'pairs': used, 'oov': skipped} over pairs with both words known."""
  vocab = wv.index if restrict is None else {w: i for i, w in enumerate(wv.words[:restrict])}
  known = [(vocab[a], vocab[b], s) for a, b, s in pairs if a in vocab and b in vocab]
  if len(known) < 2:
    return {'spearman': float('nan'), 'pairs': len(known), 'oov': len(pairs) - len(known)}
  a, b, human = (np.array(col) for col in zip(*known))
  cosines = (wv.unit[a] * wv.unit[b]).sum(1)
  return {'spearman': spearman(human, cosines), 'pairs': len(known),
          'oov': len(pairs) - len(known)}


def spearman(x, y) -> float:
  """Spearman's rho: Pearson's correlation of the ranks, ties given their mean rank."""
  rx, ry = _ranks(np.asarray(x, np.float64)), _ranks(np.asarray(y, np.float64))
  rx, ry = rx - rx.mean(), ry - ry.mean()
  return float((rx * ry).sum() / np.sqrt((rx * rx).sum() * (ry * ry).sum()))


def _ranks(x):
  order = np.argsort(x, kind='stable')
  ranks = np.empty(len(x))
  ranks[order] = np.arange(1, len(x) + 1)
  values, inverse = np.unique(x, return_inverse=True)
  sums = np.bincount(inverse, ranks)
  return (sums / np.bincount(inverse))[inverse]


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


def _lines(path):
  if not os.path.isfile(path):
    raise UserError(f'no such evaluation file: {path}')
  with open(path, encoding='utf-8', errors='replace') as f:
    return f.read().splitlines()
