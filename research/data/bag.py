"""Sparse document features for linear classifiers: bags of n-grams, TF-IDF.

Sparse document features for linear classifiers: bags of n-grams, TF-IDF,
averaged word vectors and bags of centroids, all in one padded sparse form.

A feature matrix is `Sparse(index [N, L] int32, value [N, L] float32, dim)`:
row i's nonzero features, padded with index 0 and value 0 (ELLPACK), so a
linear model is a gather and a sum, jit-friendly with static shapes. Dense
features (averaged vectors) are the same with index = 0..D-1 in every row.

Weighting follows scikit-learn's text vectorizers, so numbers compare:
- bow: raw counts of the vocabulary's terms (CountVectorizer), rows L2-normalized;
- tfidf: (1 + log tf) * idf with idf = ln((1 + N) / (1 + df)) + 1, rows L2-normalized
  (TfidfVectorizer(sublinear_tf=True)).
"""
import collections
import dataclasses

import numpy as np

from research.errors import UserError


@dataclasses.dataclass
class Sparse:
  index: np.ndarray   # [N, L] int32
  value: np.ndarray   # [N, L] float32
  dim: int

  def __len__(self):
    return len(self.index)


def ngrams(tokens: list[str], n_max: int) -> list[str]:
  out = list(tokens)
  for n in range(2, n_max + 1):
    out += [' '.join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
  return out


@dataclasses.dataclass
class Vocabulary:
  terms: list[str]
  df: np.ndarray      # [V] documents containing each term.
  num_docs: int
  n_max: int

  @property
  def index(self):
    return {t: i for i, t in enumerate(self.terms)}


def build_vocabulary(docs: list[list[str]], n_max: int = 1, max_features: int = 0,
                     min_df: int = 1) -> Vocabulary:
  """Terms (n-grams up to n_max) in at least min_df documents; the max_features
  most frequent by corpus count (CountVectorizer's rule), ties alphabetical."""
  count, df = collections.Counter(), collections.Counter()
  for tokens in docs:
    grams = collections.Counter(ngrams(tokens, n_max))
    count.update(grams)
    df.update(grams.keys())
  terms = [t for t in count if df[t] >= min_df]
  if not terms:
    raise UserError(f'empty vocabulary: no term is in {min_df} or more documents')
  terms.sort(key=lambda t: (-count[t], t))
  if max_features:
    terms = terms[:max_features]
  return Vocabulary(terms, np.array([df[t] for t in terms], np.int64), len(docs), n_max)


def term_counts(docs: list[list[str]], vocab: Vocabulary) -> Sparse:
  index = vocab.index
  rows = []
  for tokens in docs:
    c = collections.Counter(g for g in ngrams(tokens, vocab.n_max) if g in index)
    rows.append((np.array([index[g] for g in c], np.int32), np.array(list(c.values()), np.float32)))
  return _pack(rows, len(vocab.terms))


def weight(counts: Sparse, scheme: str, vocab: Vocabulary | None = None) -> Sparse:
  """bow: counts; tfidf: sublinear tf times smooth idf. Rows L2-normalized."""
  value = counts.value.astype(np.float64)
  if scheme == 'tfidf':
    idf = np.log((1 + vocab.num_docs) / (1 + vocab.df)) + 1.0
    value = np.where(value > 0, (1 + np.log(np.maximum(value, 1))) * idf[counts.index], 0.0)
  elif scheme != 'bow':
    raise UserError(f'unknown weighting {scheme!r}; use bow or tfidf')
  return Sparse(counts.index, _l2(value), counts.dim)


def average_vectors(docs: list[list[str]], words: dict, vectors: np.ndarray) -> Sparse:
  """Each document's mean word vector over its words that have one (zeros if none)."""
  out = np.zeros((len(docs), vectors.shape[1]), np.float32)
  for i, tokens in enumerate(docs):
    ids = [words[t] for t in tokens if t in words]
    if ids:
      out[i] = vectors[ids].mean(0)
  return dense(out)


def centroid_counts(docs: list[list[str]], words: dict, cluster: np.ndarray, k: int) -> Sparse:
  """Bag of centroids: how many of a document's words fall in each cluster."""
  rows = []
  for tokens in docs:
    c = collections.Counter(int(cluster[words[t]]) for t in tokens if t in words)
    rows.append((np.array(list(c), np.int32), np.array(list(c.values()), np.float32)))
  return _pack(rows, k)


def dense(x: np.ndarray) -> Sparse:
  n, d = x.shape
  return Sparse(np.broadcast_to(np.arange(d, dtype=np.int32), (n, d)).copy(),
                x.astype(np.float32), d)


def _l2(value):
  norm = np.sqrt(np.sum(value * value, axis=1, keepdims=True))
  return (value / np.maximum(norm, 1e-12)).astype(np.float32)


def _pack(rows, dim) -> Sparse:
  width = max(1, max(len(i) for i, _ in rows))
  index = np.zeros((len(rows), width), np.int32)
  value = np.zeros((len(rows), width), np.float32)
  for r, (i, v) in enumerate(rows):
    index[r, :len(i)], value[r, :len(v)] = i, v
  return Sparse(index, value, dim)
