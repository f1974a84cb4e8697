"""GloVe (Pennington et al. 2014) as pure functions of (params, batch).

Weighted least squares on the co-occurrence counts X:
  J = sum_ij f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2,
  f(x) = min(1, (x / x_max)^alpha),
trained with AdaGrad as the reference C tool does: parameters 'w', 'w_tilde'
[V, D] and biases 'b', 'b_tilde' [V] initialized uniform in +-0.5 / D, and
squared gradient sums (the optimizer state) starting at 1. A batch is a set of (i, j, X_ij) entries; its
gradients are summed per row and applied as sparse AdaGrad updates, so a step
costs the batch, not the vocabulary. The saved word vectors are W + W~.
"""
import dataclasses

import jax
import jax.numpy as jnp

NAMES = ('w', 'w_tilde', 'b', 'b_tilde')


@dataclasses.dataclass(frozen=True)
class GloVe:
  vocab_size: int
  dim: int = 100
  x_max: float = 100.0
  alpha: float = 0.75
  grad_clip: float = 100.0  # the C tool clips each entry's lr * gradient at this value.

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
    """(0.5 * J over the batch's live entries, {name: (row ids, per-entry gradients)})."""
    w, wt = params['w'][rows], params['w_tilde'][cols]
    diff = (w * wt).sum(-1) + params['b'][rows] + params['b_tilde'][cols] - jnp.log(
        jnp.maximum(x, 1e-30))
    fdiff = self.weight(x) * diff * live
    loss = 0.5 * (fdiff * diff).sum()
    return loss, {'w': (rows, fdiff[:, None] * wt), 'w_tilde': (cols, fdiff[:, None] * w),
                  'b': (rows, fdiff), 'b_tilde': (cols, fdiff)}

  def adagrad(self, params, gradsq, grads, lr):
    """AdaGrad on the rows the batch touches: each row's gradients are summed
    (entries clipped as the C tool clips them), the row moves by
    -lr * g / sqrt(accumulator), and then g^2 is added to the accumulator: glove.c
    divides by the sum of the *earlier* squared gradients, not the textbook
    AdaGrad's sum including this one. Costs the batch size: rows are made unique
    by sorting, not by a vocabulary-sized scatter. Returns the new (params, gradsq)."""
    params, gradsq = dict(params), dict(gradsq)
    for name, (ids, g) in grads.items():
      g = jnp.clip(lr * g, -self.grad_clip, self.grad_clip)  # lr * gradient, as in glove.c.
      unique, inverse = jnp.unique(ids, size=ids.shape[0], fill_value=self.vocab_size,
                                   return_inverse=True)
      summed = jnp.zeros((ids.shape[0],) + g.shape[1:], g.dtype).at[inverse.reshape(-1)].add(g)
      before = gradsq[name].at[unique].get(mode='fill', fill_value=1.0)
      step = summed / jnp.sqrt(before)
      acc = before + summed * summed
      params[name] = params[name].at[unique].add(-step, mode='drop')
      gradsq[name] = gradsq[name].at[unique].set(acc, mode='drop')
    return params, gradsq
