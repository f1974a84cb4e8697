"""Layers shared by the sequence models: masked attention and recurrent cells.

Recurrent layers keep their recurrence as plain jnp math inside `lax.scan`, and
hoist the input projection of the whole sequence out of the time loop, so each
step does one (batch x hidden) matmul (the cuDNN trick).

Every layer takes flax's `dtype` (the compute dtype) and `param_dtype` (the
master weights, float32 by default); softmax, gates and recurrent states stay
float32 in any compute dtype.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.errors import UserError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# A score that loses every softmax and every beam, yet stays finite: a fully masked
# row gives a uniform softmax, not NaN, and sums of such scores do not overflow.
NEG_INF = -1.0e9


def resolve_dtype(name: str, key: str = 'model.dtype', platform: str | None = None):
  """A dtype by name; 'auto' is bfloat16 on GPU and TPU and float32 on CPU, so CPU
  runs keep their float32 numbers."""
  if name == 'auto':
    name = 'bfloat16' if (platform or jax.default_backend()) in ('gpu', 'tpu') else 'float32'
  if name not in DTYPES:
    raise UserError(f'{key}={name!r} is not a dtype seqlab computes in; use auto, '
                    + ' or '.join(DTYPES))
  return DTYPES[name]


def model_dtypes(cfg):
  """(compute dtype, parameter dtype) of config.model: flax's dtype and param_dtype.
  Optional keys: the models without add_precision_keys (word2vec, GloVe) are float32."""
  return (resolve_dtype(cfg.get('dtype', 'float32')),
          resolve_dtype(cfg.get('param_dtype', 'float32'), 'model.param_dtype'))


class Embed(nn.Embed):
  """nn.Embed that gathers rows of the parameter table before casting them to the
  compute dtype, rather than casting the whole table first. The backward pass's
  scatter-add of the rows' gradients then accumulates in the parameters' dtype
  (float32), not in bfloat16: more precise, and fast on GPUs, whose bfloat16
  scatter-add is slow. In float32 it is the same computation as nn.Embed's."""

  def __call__(self, inputs):
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ValueError('Input type must be an integer or unsigned integer.')
    if self.num_embeddings == 1:  # as nn.Embed: the one row for any id.
      rows = jnp.broadcast_to(self.embedding, inputs.shape + (self.features,))
    else:
      rows = jnp.take(self.embedding, inputs, axis=0)
    return rows.astype(self.dtype) if self.dtype is not None else rows


def logical(init, *names):
  """An initializer whose parameter carries logical axis names (research.parallel's
  LOGICAL_RULES map them to mesh axes)."""
  return nn.with_logical_partitioning(init, names)


def at_least_float32(x):
  """x in float32, or in its own dtype if that is wider (float64 in gradient checks)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def float32_dot(x, kernel, dtype=None):
  """x @ kernel computed in `dtype` (None: the operands'), accumulated and returned in
  at least float32."""
  dtype = dtype or jnp.result_type(x, kernel)
  return jnp.dot(x.astype(dtype), kernel.astype(dtype),
                 preferred_element_type=jnp.promote_types(dtype, jnp.float32))


def masked_softmax(scores, mask):
  """Softmax over the last axis, in float32; where `mask` is False gets exactly zero."""
  scores = at_least_float32(scores)
  scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
  weights = jax.nn.softmax(scores, axis=-1)
  return weights * mask  # exact zeros, even for a fully masked row.


class AdditiveAttention(nn.Module):
  """Bahdanau et al. 2014 attention: score(s, h_j) = v^T tanh(W s + U h_j)."""
  features: int
  dtype: Any = None              # None: the inputs' (flax's convention).
  param_dtype: Any = jnp.float32

  def setup(self):
    dense = lambda n, name, **kw: nn.Dense(n, dtype=self.dtype, param_dtype=self.param_dtype,
                                           name=name, **kw)
    self.query_proj = dense(self.features, 'query', use_bias=False)
    self.key_proj = dense(self.features, 'key')
    self.energy = dense(1, 'energy', use_bias=False)

  def project_keys(self, keys):
    """U h_j for every source position; computed once per sentence."""
    return self.key_proj(keys)

  def attend(self, query, projected_keys, values, mask):
    """query [B, Dq], projected_keys [B, S, A], values [B, S, Dv], mask [B, S]."""
    q = self.query_proj(query)[:, None, :]
    scores = self.energy(jnp.tanh(projected_keys + q))[..., 0]
    weights = masked_softmax(scores, mask)
    context = jnp.einsum('bs,bsd->bd', weights.astype(values.dtype), values)
    return context, weights

  def __call__(self, query, keys, values, mask):
    return self.attend(query, self.project_keys(keys), values, mask)


class LuongAttention(nn.Module):
  """Luong, Pham and Manning 2015 global attention on the current decoder state.

  score(h_t, h_s): dot  h_t . h_s;  general  h_t . W h_s;  concat  v . tanh(W [h_t; h_s]).
  `dot` needs the query and key sizes to match.
  """
  score: str = 'general'
  features: int = 128   # the query size for general, the hidden size for concat.
  dtype: Any = None              # None: the inputs' (flax's convention).
  param_dtype: Any = jnp.float32

  def setup(self):
    if self.score not in ('dot', 'general', 'concat'):
      raise ValueError(f'unknown Luong score {self.score!r}; use dot, general or concat')
    dense = lambda n, name, **kw: nn.Dense(n, dtype=self.dtype, param_dtype=self.param_dtype,
                                           name=name, **kw)
    if self.score == 'general':
      self.key_proj = dense(self.features, 'key', use_bias=False)
    elif self.score == 'concat':
      self.key_proj = dense(self.features, 'key')
      self.query_proj = dense(self.features, 'query', use_bias=False)
      self.energy = dense(1, 'energy', use_bias=False)

  def project_keys(self, keys):
    return keys if self.score == 'dot' else self.key_proj(keys)

  def attend(self, query, projected_keys, values, mask):
    if self.score == 'concat':
      scores = self.energy(jnp.tanh(projected_keys + self.query_proj(query)[:, None, :]))[..., 0]
    else:
      scores = jnp.einsum('bd,bsd->bs', query, projected_keys)
    weights = masked_softmax(scores, mask)
    return jnp.einsum('bs,bsd->bd', weights.astype(values.dtype), values), weights

  def __call__(self, query, keys, values, mask):
    return self.attend(query, self.project_keys(keys), values, mask)


def gru_update(h, x_proj, h_proj):
  """One GRU step (Cho et al. 2014) from precomputed input/hidden projections; the
  gates and the state are float32 whatever the projections' dtype."""
  xr, xz, xn = jnp.split(at_least_float32(x_proj), 3, axis=-1)
  hr, hz, hn = jnp.split(at_least_float32(h_proj), 3, axis=-1)
  r = jax.nn.sigmoid(xr + hr)
  z = jax.nn.sigmoid(xz + hz)
  n = jnp.tanh(xn + r * hn)
  return (1.0 - z) * n + z * h


class GRUCell(nn.Module):
  """A GRU cell whose input projection can be applied to a whole sequence."""
  features: int
  dtype: Any = None              # None: the inputs' (flax's convention).
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.input = nn.Dense(3 * self.features, name='input', **kw)
    self.hidden = nn.Dense(3 * self.features, name='hidden',
                           kernel_init=nn.initializers.orthogonal(), **kw)

  def project_inputs(self, x):
    return self.input(x)

  def __call__(self, h, x_proj):
    return gru_update(h, x_proj, self.hidden(h))


class GRU(nn.Module):
  """A GRU over [B, T, D] inputs; padded steps (mask False) keep the state.

  With reverse=True it reads right to left, and since padding sits at the end
  the state stays at zero until the first real token.
  """
  features: int
  reverse: bool = False
  dtype: Any = None              # None: the inputs' (flax's convention).
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask):
    x_proj = nn.Dense(3 * self.features, dtype=self.dtype, param_dtype=self.param_dtype,
                      name='input')(x)
    kernel = self.param('hidden_kernel', nn.initializers.orthogonal(),
                        (self.features, 3 * self.features), self.param_dtype)
    bias = self.param('hidden_bias', nn.initializers.zeros, (3 * self.features,),
                      self.param_dtype)

    def step(h, inputs):
      xp, m = inputs
      h_new = gru_update(h, xp, float32_dot(h, kernel, self.dtype) + bias)
      h = jnp.where(m[:, None], h_new, h)
      return h, h

    h0 = at_least_float32(jnp.zeros((x.shape[0], self.features), x_proj.dtype))  # float32 state.
    final, outputs = jax.lax.scan(
        step, h0, (jnp.swapaxes(x_proj, 0, 1), jnp.swapaxes(mask, 0, 1)),
        reverse=self.reverse)
    return jnp.swapaxes(outputs, 0, 1), final


def lstm_update(h, c, x_proj, h_proj):
  """One LSTM step (Hochreiter and Schmidhuber 1997) from precomputed projections;
  the gates and the state are float32."""
  i, f, g, o = jnp.split(at_least_float32(x_proj) + at_least_float32(h_proj), 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c), c


class LSTMCell(nn.Module):
  """An LSTM cell whose input projection can be applied to a whole sequence."""
  features: int
  dtype: Any = None              # None: the inputs' (flax's convention).
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.input = nn.Dense(4 * self.features, name='input', **kw)
    self.hidden = nn.Dense(4 * self.features, use_bias=False, name='hidden',
                           kernel_init=nn.initializers.orthogonal(), **kw)

  def project_inputs(self, x):
    return self.input(x)

  def __call__(self, carry, x_proj):
    h, c = carry
    return lstm_update(h, c, x_proj, self.hidden(h))


class LSTM(nn.Module):
  """An LSTM over [B, T, D] inputs; padded steps (mask False) keep the state."""
  features: int
  dtype: Any = None              # None: the inputs' (flax's convention).
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask):
    x_proj = nn.Dense(4 * self.features, dtype=self.dtype, param_dtype=self.param_dtype,
                      name='input')(x)
    kernel = self.param('hidden_kernel', nn.initializers.orthogonal(),
                        (self.features, 4 * self.features), self.param_dtype)

    def step(carry, inputs):
      h, c = carry
      xp, m = inputs
      h_new, c_new = lstm_update(h, c, xp, float32_dot(h, kernel, self.dtype))
      keep = m[:, None]
      carry = (jnp.where(keep, h_new, h), jnp.where(keep, c_new, c))
      return carry, carry[0]

    zeros = at_least_float32(jnp.zeros((x.shape[0], self.features), x_proj.dtype))  # float32.
    final, outputs = jax.lax.scan(
        step, (zeros, zeros), (jnp.swapaxes(x_proj, 0, 1), jnp.swapaxes(mask, 0, 1)))
    return jnp.swapaxes(outputs, 0, 1), final


def reverse_padded(x, mask):
  """Reverses each sequence within its length; padding stays at the end."""
  length = mask.sum(-1, keepdims=True)
  t = jnp.arange(x.shape[1])[None, :]
  index = jnp.where(t < length, length - 1 - t, t)
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)
