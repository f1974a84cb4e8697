"""Layers shared by the sequence models: masked attention and recurrent cells.

Recurrent layers keep their recurrence as plain jnp math inside `lax.scan`, and
hoist the input projection of the whole sequence out of the time loop, so each
step does one (batch x hidden) matmul (the cuDNN trick).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


def masked_softmax(scores, mask):
  """Softmax over the last axis where `mask` is False gets exactly zero weight."""
  scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
  weights = jax.nn.softmax(scores, axis=-1)
  return weights * mask  # exact zeros, even for a fully masked row.


class AdditiveAttention(nn.Module):
  """Bahdanau et al. 2014 attention: score(s, h_j) = v^T tanh(W s + U h_j)."""
  features: int

  def setup(self):
    self.query_proj = nn.Dense(self.features, use_bias=False, name='query')
    self.key_proj = nn.Dense(self.features, name='key')
    self.energy = nn.Dense(1, use_bias=False, name='energy')

  def project_keys(self, keys):
    """U h_j for every source position; computed once per sentence."""
    return self.key_proj(keys)

  def attend(self, query, projected_keys, values, mask):
    """query [B, Dq], projected_keys [B, S, A], values [B, S, Dv], mask [B, S]."""
    q = self.query_proj(query)[:, None, :]
    scores = self.energy(jnp.tanh(projected_keys + q))[..., 0]
    weights = masked_softmax(scores, mask)
    context = jnp.einsum('bs,bsd->bd', weights, values)
    return context, weights

  def __call__(self, query, keys, values, mask):
    return self.attend(query, self.project_keys(keys), values, mask)


def gru_update(h, x_proj, h_proj):
  """One GRU step (Cho et al. 2014) from precomputed input/hidden projections."""
  xr, xz, xn = jnp.split(x_proj, 3, axis=-1)
  hr, hz, hn = jnp.split(h_proj, 3, axis=-1)
  r = jax.nn.sigmoid(xr + hr)
  z = jax.nn.sigmoid(xz + hz)
  n = jnp.tanh(xn + r * hn)
  return (1.0 - z) * n + z * h


class GRUCell(nn.Module):
  """A GRU cell whose input projection can be applied to a whole sequence."""
  features: int

  def setup(self):
    self.input = nn.Dense(3 * self.features, name='input')
    self.hidden = nn.Dense(3 * self.features, name='hidden',
                           kernel_init=nn.initializers.orthogonal())

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

  @nn.compact
  def __call__(self, x, mask):
    x_proj = nn.Dense(3 * self.features, name='input')(x)
    kernel = self.param('hidden_kernel', nn.initializers.orthogonal(),
                        (self.features, 3 * self.features))
    bias = self.param('hidden_bias', nn.initializers.zeros, (3 * self.features,))

    def step(h, inputs):
      xp, m = inputs
      h_new = gru_update(h, xp, h @ kernel + bias)
      h = jnp.where(m[:, None], h_new, h)
      return h, h

    h0 = jnp.zeros((x.shape[0], self.features), x_proj.dtype)
    final, outputs = jax.lax.scan(
        step, h0, (jnp.swapaxes(x_proj, 0, 1), jnp.swapaxes(mask, 0, 1)),
        reverse=self.reverse)
    return jnp.swapaxes(outputs, 0, 1), final
