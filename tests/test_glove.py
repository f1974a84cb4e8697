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

  loss, grads, sq_norm = model.loss_and_grads(params, rows, cols, x, live)
  np.testing.assert_allclose(loss, objective(params), rtol=1e-6)
  auto = jax.grad(objective)(params)
  for name, (ids, g) in grads.items():
    dense = jnp.zeros_like(params[name]).at[ids].add(g)
    np.testing.assert_allclose(dense, auto[name], atol=1e-6)
  np.testing.assert_allclose(sq_norm, sum(float(jnp.vdot(g, g)) for _, g in grads.values()),
                             rtol=1e-5)


def test_adagrad_takes_each_entrys_step_against_the_batch_start_accumulators():
  model = GloVe(vocab_size=5, dim=3)
  params = model.init(jax.random.PRNGKey(0))
  gradsq = jax.tree.map(lambda p: 1.0 + jnp.arange(p.size, dtype=p.dtype).reshape(p.shape),
                        params)  # distinct accumulators, so a wrong row would show.
  rows, cols, x, live = _batch()
  _, grads, _ = model.loss_and_grads(params, rows, cols, x, live)
  new_params, new_gradsq = model.adagrad(params, gradsq, grads, lr=0.05)
  for name in NAMES:
    ids, g = grads[name]
    g = 0.05 * np.asarray(g)
    steps = np.zeros(params[name].shape, np.float32)
    squares = np.zeros(params[name].shape, np.float32)
    np.add.at(steps, np.asarray(ids), g)  # a row in two entries takes both steps.
    np.add.at(squares, np.asarray(ids), g * g)  # and both squares, not the sum's square.
    np.testing.assert_allclose(new_gradsq[name], np.asarray(gradsq[name]) + squares, rtol=1e-6)
    np.testing.assert_allclose(new_params[name],
                               np.asarray(params[name]) - steps / np.sqrt(np.asarray(gradsq[name])),
                               rtol=1e-5, atol=1e-7)
  untouched = 4  # word 4 is in no entry.
  np.testing.assert_array_equal(new_params['w'][untouched], params['w'][untouched])


def _glove_c(params, gradsq, rows, cols, x, lr, x_max=100.0, alpha=0.75, clip=100.0):
  """glove.c's inner loop, one entry after another, in float64; lr * gradient clipped
  for the biases too, as the model clips it."""
  p = {k: np.array(v, np.float64) for k, v in params.items()}
  gs = {k: np.array(v, np.float64) for k, v in gradsq.items()}
  for i, j, v in zip(rows, cols, x):
    diff = p['w'][i] @ p['w_tilde'][j] + p['b'][i] + p['b_tilde'][j] - np.log(v)
    fdiff = (diff if v > x_max else (v / x_max) ** alpha * diff) * lr
    t1 = np.clip(fdiff * p['w_tilde'][j], -clip, clip)
    t2 = np.clip(fdiff * p['w'][i], -clip, clip)
    p['w'][i] -= t1 / np.sqrt(gs['w'][i])
    p['w_tilde'][j] -= t2 / np.sqrt(gs['w_tilde'][j])
    gs['w'][i] += t1 * t1
    gs['w_tilde'][j] += t2 * t2
    fdiff = np.clip(fdiff, -clip, clip)
    p['b'][i] -= fdiff / np.sqrt(gs['b'][i])
    p['b_tilde'][j] -= fdiff / np.sqrt(gs['b_tilde'][j])
    gs['b'][i] += fdiff * fdiff
    gs['b_tilde'][j] += fdiff * fdiff
  return p, gs


def test_a_batch_of_distinct_rows_is_glove_c_run_entry_by_entry():
  model = GloVe(vocab_size=6, dim=4, x_max=10.0, grad_clip=0.02)  # the clip binds.
  params = jax.tree.map(lambda p: 40.0 * p, model.init(jax.random.PRNGKey(1)))
  gradsq = model.init_gradsq(params)
  rows, cols = jnp.array([0, 1, 2, 5]), jnp.array([3, 4, 0, 1])
  x, live = jnp.array([3.0, 1.0, 25.0, 0.5]), jnp.ones(4, jnp.float32)
  for _ in range(3):  # accumulators above 1 by the later passes.
    want = _glove_c(params, gradsq, np.asarray(rows), np.asarray(cols), np.asarray(x), 0.5,
                    10.0, clip=0.02)
    _, grads, _ = model.loss_and_grads(params, rows, cols, x, live)
    params, gradsq = model.adagrad(params, gradsq, grads, lr=0.5)
    for name in NAMES:
      np.testing.assert_allclose(params[name], want[0][name], rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(gradsq[name], want[1][name], rtol=1e-5)


def test_accumulators_start_at_one():
  model = GloVe(vocab_size=5, dim=3)
  gradsq = model.init_gradsq(model.init(jax.random.PRNGKey(0)))
  assert gradsq['w'].shape == (5, 3) and gradsq['b'].shape == (5,)
  assert all(bool((a == 1.0).all()) for a in gradsq.values())


def test_weighting_function():
  f = GloVe(vocab_size=2, x_max=10.0, alpha=0.75).weight(jnp.array([1.0, 10.0, 50.0]))
  np.testing.assert_allclose(f, [0.1 ** 0.75, 1.0, 1.0], rtol=1e-6)
