"""Sentiment classifiers for "Bag of Words Meets Bags of Popcorn", pure functions.

- Logistic regression over sparse features (`research.data.bag.Sparse`): the
  logit is a gather and a weighted sum, sum_j value_j w[index_j] + b.
- k-means (Lloyd's algorithm, k-means++ seeding) for the bag of centroids.
- A Transformer encoder classifier (the Transformer's own encoder layers, mean
  pooled over the review), its embeddings trained from scratch or initialized
  from word vectors.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import layers
from research.models import register, transformer


@register('logistic_regression', 'popcorn')
class LogisticRegression:
  """Logistic regression over sparse features: a gather and a weighted sum."""

  @staticmethod
  def init(dim: int):
    return {'w': jnp.zeros(dim, jnp.float32), 'b': jnp.zeros((), jnp.float32)}

  @staticmethod
  def logits(params, index, value):
    return jnp.sum(value * params['w'][index], axis=-1) + params['b']


def binary_loss(logits, labels):
  """Per-example logistic loss, log(1 + exp(-s z)) with s = +-1."""
  return jax.nn.softplus(-(2.0 * labels - 1.0) * logits)


# --- k-means ----------------------------------------------------------------------------


def kmeans(x, k: int, key, iters: int = 20):
  """Lloyd's k-means on the rows of x [N, D] (k-means++ seeding over a sample).
  Returns (centers [k, D], assignment [N] int32, inertia per iteration [iters])."""
  x = jnp.asarray(x, jnp.float32)
  centers = _plus_plus(x, k, key)
  sq = jnp.sum(x * x, 1)

  def assign(centers):
    d = sq[:, None] - 2 * x @ centers.T + jnp.sum(centers * centers, 1)[None, :]
    return jnp.argmin(d, 1).astype(jnp.int32), jnp.min(d, 1)

  def step(centers, _):
    a, dist = assign(centers)
    sums = jax.ops.segment_sum(x, a, k)
    count = jax.ops.segment_sum(jnp.ones_like(sq), a, k)
    # An emptied cluster keeps its center rather than becoming NaN.
    centers = jnp.where(count[:, None] > 0, sums / jnp.maximum(count, 1)[:, None], centers)
    return centers, jnp.sum(dist)

  centers, inertia = jax.lax.scan(step, centers, None, length=iters)
  return centers, assign(centers)[0], inertia


def _plus_plus(x, k, key, sample: int = 20000):
  """k-means++ (Arthur and Vassilvitskii 2007) seeding on up to `sample` rows."""
  key, sub = jax.random.split(key)
  n = x.shape[0]
  pool = x if n <= sample else x[jax.random.choice(sub, n, (sample,), replace=False)]
  key, sub = jax.random.split(key)
  first = pool[jax.random.randint(sub, (), 0, pool.shape[0])]
  dist = jnp.sum((pool - first) ** 2, 1)

  def pick(carry, key):
    dist, = carry
    i = jax.random.categorical(key, jnp.log(jnp.maximum(dist, 1e-30)))
    c = pool[i]
    return (jnp.minimum(dist, jnp.sum((pool - c) ** 2, 1)),), c

  _, rest = jax.lax.scan(pick, (dist,), jax.random.split(key, k - 1))
  return jnp.concatenate([first[None], rest])


# --- the neural classifier --------------------------------------------------------------


@register('sentiment_encoder', 'popcorn')
class EncoderClassifier(nn.Module):
  """Embeddings (+ sinusoidal positions), N Transformer encoder layers, masked
  mean pooling, a logistic output. tokens [B, T] with 0 as padding."""
  vocab_size: int
  sizes: transformer.Sizes
  num_layers: int = 2
  freeze_embeddings: bool = False  # keep word2vec's vectors: 2.6M fewer parameters to overfit.

  @nn.compact
  def __call__(self, tokens, train: bool = False):
    s = self.sizes
    d = s.model_dim
    mask = tokens > 0
    x = layers.Embed(self.vocab_size, d, name='embed', **s.dtypes)(tokens)
    if self.freeze_embeddings:
      x = jax.lax.stop_gradient(x)
    x = x * jnp.asarray(np.sqrt(d), x.dtype)
    x = x + transformer.sinusoids(tokens.shape[1], d)[None].astype(x.dtype)
    x = transformer.dropout(self, x, s.dropout, train)
    layer = s.layer(transformer.EncoderLayer)
    for i in range(self.num_layers):
      x, _ = layer(pre_ln=True, dropout=s.dropout, sizes=s, name=f'layer{i}')(
          x, mask[:, None, :], train)
    x = s.norm('final_norm')(x)
    pooled = jnp.sum(x * mask[..., None], 1) / jnp.maximum(mask.sum(1, keepdims=True), 1)
    return nn.Dense(1, name='out', **s.dtypes)(pooled)[:, 0].astype(jnp.float32)


# --- metrics (numpy) --------------------------------------------------------------------


def roc_curve(labels, scores):
  """(false positive rate, true positive rate) over every threshold, ties merged."""
  order = np.argsort(-scores, kind='stable')
  y, s = labels[order] > 0.5, scores[order]
  last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each tied score.
  tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
  return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def classification_metrics(labels, p) -> dict:
  labels = labels > 0.5
  predicted = p > 0.5
  tp = np.sum(predicted & labels)
  fp, fn = np.sum(predicted & ~labels), np.sum(~predicted & labels)
  fpr, tpr = roc_curve(labels.astype(np.float32), p)
  eps = 1e-7
  log_loss = -np.mean(np.where(labels, np.log(np.maximum(p, eps)), np.log(np.maximum(1 - p, eps))))
  return {'accuracy': float(np.mean(predicted == labels)),
          'auc': float(np.trapezoid(tpr, fpr)),
          'f1': float(2 * tp / max(2 * tp + fp + fn, 1)),
          'log_loss': float(log_loss)}
