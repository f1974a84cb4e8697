"""GloVe's pure functions: the loss, its gradients, and sparse AdaGrad."""
import jax
import jax.numpy as jnp
import numpy as np

from research.models.glove import NAMES, GloVe


def _batch():
  rows = jnp.array([0, 1, 2, 0, 3, 1])
  cols = jnp.array([1, 0, 3, 2, 2, 0])   # (1, 0) twice: a row's gradients are summed.
  x = jnp.array([3.0, 1.0, 250.0, 0.5, 8.0, 2.0])
  live = jnp.array([1, 1, 1, 1, 1, 0], jnp.float32)  # the last entry is padding.
  return rows, cols, x, live


def test_gradients_match_autodiff_of_the_weighted_least_squares():
  model = GloVe(vocab_size=5, dim=3, x_max=100.0)
  params = model.init(jax.random.PRNGKey(0))
  rows, cols, x, live = _batch()

  def objective(p):
    f = jnp.minimum(1.0, (x / 100.0) ** 0.75)
    d = (p['w'][rows] * p['w_tilde'][cols]).sum(-1) + p['b'][rows] + p['b_tilde'][cols] - jnp.log(x)
    return 0.5 * (f * d * d * live).sum()

  loss, grads = model.loss_and_grads(params, rows, cols, x, live)
  np.testing.assert_allclose(loss, objective(params), rtol=1e-6)
  auto = jax.grad(objective)(params)
  for name, (ids, g) in grads.items():
    dense = jnp.zeros_like(params[name]).at[ids].add(g)
    np.testing.assert_allclose(dense, auto[name], atol=1e-6)


def test_adagrad_updates_touched_rows_once_with_their_summed_gradient():
  model = GloVe(vocab_size=5, dim=3)
  params = model.init(jax.random.PRNGKey(0))
  gradsq = jax.tree.map(lambda p: 1.0 + jnp.arange(p.size, dtype=p.dtype).reshape(p.shape),
                        params)  # distinct accumulators, so a wrong row would show.
  rows, cols, x, live = _batch()
  _, grads = model.loss_and_grads(params, rows, cols, x, live)
  new_params, new_gradsq = model.adagrad(params, gradsq, grads, lr=0.05)
  for name in NAMES:
    ids, g = grads[name]
    summed = np.asarray(jnp.zeros_like(params[name]).at[ids].add(0.05 * g))
    acc = np.asarray(gradsq[name]) + summed ** 2
    np.testing.assert_allclose(new_gradsq[name], acc, rtol=1e-6)
    np.testing.assert_allclose(new_params[name],
                               np.asarray(params[name]) - summed / np.sqrt(np.asarray(gradsq[name])),
                               rtol=1e-5, atol=1e-7)
  untouched = 4  # word 4 is in no entry.
  np.testing.assert_array_equal(new_params['w'][untouched], params['w'][untouched])


def test_accumulators_start_at_one():
  model = GloVe(vocab_size=5, dim=3)
  gradsq = model.init_gradsq(model.init(jax.random.PRNGKey(0)))
  assert gradsq['w'].shape == (5, 3) and gradsq['b'].shape == (5,)
  assert all(bool((a == 1.0).all()) for a in gradsq.values())


def test_weighting_function():
  f = GloVe(vocab_size=2, x_max=10.0, alpha=0.75).weight(jnp.array([1.0, 10.0, 50.0]))
  np.testing.assert_allclose(f, [0.1 ** 0.75, 1.0, 1.0], rtol=1e-6)
