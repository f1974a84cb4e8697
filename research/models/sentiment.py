"""Sentiment classifiers for "Bag of Words Meets Bags of Popcorn", pure functions.

- Logistic regression over sparse features (`research.data.bag.Sparse`): the
  logit is a gather and a weighted sum, sum_j value_j w[index_j] + b.
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
