"""k-means clustering: Lloyd's algorithm with k-means++ seeding, in jax.

The bag of centroids (research/tasks/popcorn.py) groups word vectors with it.
"""
import jax
import jax.numpy as jnp


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
