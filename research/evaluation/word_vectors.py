"""Word-vector evaluation: analogies and word similarity, scored as gensim scores them.

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
"""
import os

import numpy as np

from research.errors import UserError
from research.word_vectors import WordVectors

# Questions scored at once: 256 x 30k floats (31 MB) per matrix, which stays
# close to the cache where larger chunks thrash it.
ANALOGY_CHUNK = 256


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


def _lines(path):
  if not os.path.isfile(path):
    raise UserError(f'no such evaluation file: {path}')
  with open(path, encoding='utf-8', errors='replace') as f:
    return f.read().splitlines()
