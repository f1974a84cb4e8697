"""GloVe (Pennington et al. 2014) as pure functions of (params, batch).

Weighted least squares on the co-occurrence counts X:
  J = sum_ij f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2,
  f(x) = min(1, (x / x_max)^alpha),
trained with AdaGrad as the reference C tool does: parameters 'w', 'w_tilde'
[V, D] and biases 'b', 'b_tilde' [V] initialized uniform in +-0.5 / D, and
squared gradient sums (the optimizer state) starting at 1. A batch is a set of
(i, j, X_ij) entries, each updating its rows as one of glove.c's threads would,
all against the parameters the batch found (see `adagrad`): a step costs the
batch, not the vocabulary. The saved word vectors are W + W~.
"""
import dataclasses

import jax
import jax.numpy as jnp

from research.models import register

NAMES = ('w', 'w_tilde', 'b', 'b_tilde')


@register('glove', 'glove')
@dataclasses.dataclass(frozen=True)
class GloVe:
  vocab_size: int
  dim: int = 100
  x_max: float = 100.0
  alpha: float = 0.75
  grad_clip: float = 100.0  # lr * each entry's gradient is clipped here (glove.c: the vectors').

  def init(self, rng):
    v, d = self.vocab_size, self.dim
    keys = jax.random.split(rng, 4)
    shapes = {'w': (v, d), 'w_tilde': (v, d), 'b': (v,), 'b_tilde': (v,)}
    return {n: jax.random.uniform(k, shapes[n], jnp.float32, -0.5 / d, 0.5 / d)
            for n, k in zip(NAMES, keys)}

  @staticmethod
  def init_gradsq(params):
    """AdaGrad's squared-gradient sums, starting at 1 as in glove.c."""
    return jax.tree.map(jnp.ones_like, params)

  def weight(self, x):
    return jnp.minimum(1.0, (x / self.x_max) ** self.alpha)

  def loss_and_grads(self, params, rows, cols, x, live):
    """-> (0.5 * J over the batch's live entries, {name: (row ids, per-entry
    gradients)}, the squared norm of all those gradients)."""
    w, wt = params['w'][rows], params['w_tilde'][cols]
    diff = (w * wt).sum(-1) + params['b'][rows] + params['b_tilde'][cols] - jnp.log(
        jnp.maximum(x, 1e-30))
    fdiff = self.weight(x) * diff * live
    loss = 0.5 * (fdiff * diff).sum()
    # |fdiff w~|^2 + |fdiff w|^2 + 2 fdiff^2 from the rows' norms: no second pass over
    # the [B, D] gradients (22% of a step on 2 CPU cores).
    sq_norm = (fdiff * fdiff * ((w * w).sum(-1) + (wt * wt).sum(-1) + 2.0)).sum()
    return loss, {'w': (rows, fdiff[:, None] * wt), 'w_tilde': (cols, fdiff[:, None] * w),
                  'b': (rows, fdiff), 'b_tilde': (cols, fdiff)}, sq_norm

  def adagrad(self, params, gradsq, grads, lr):
    """AdaGrad per entry, as glove.c applies it: each entry's gradient g, times lr
    and clipped, moves its row by -g / sqrt(accumulator), and then g^2 is added to
    the accumulator (glove.c divides by the *earlier* squared gradients, not the
    textbook sum including this one). All the batch's entries read the rows and
    accumulators as the batch found them, as the C tool's threads read rows the
    others are updating; a row in k entries takes k such steps, added up. So a
    batch is two scatter-adds per parameter, with no sorting. Returns the new
    (params, gradsq)."""
    params, gradsq = dict(params), dict(gradsq)
    for name, (ids, g) in grads.items():
      g = jnp.clip(lr * g, -self.grad_clip, self.grad_clip)
      before = gradsq[name][ids]
      params[name] = params[name].at[ids].add(-g / jnp.sqrt(before))
      # `before` is at least 1. Selecting on it makes the accumulator's update read
      # the gather, so XLA gathers first and adds in place; otherwise it copies both
      # [V, D] accumulators every step.
      gradsq[name] = gradsq[name].at[ids].add(jnp.where(before > 0, g * g, 0.0))
    return params, gradsq
