"""Accelerator-grade training on forced CPU devices: bf16, microbatches, FSDP and
tensor parallelism, portable checkpoints, remat, profiling and checkpoint averaging."""
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import ROOT, launch
from research import checkpoint, config as config_lib, train
from research.errors import UserError


FAST = {'optimizer.learning_rate': 1e-2, 'optimizer.warmup_steps': 0}


def transformer_config(**overrides):
  """A small Transformer on random full-width pairs (no files)."""
  c = config_lib.load_config_file(os.path.join(ROOT, 'configs/transformer.py'), 'bench')
  c.data.vocab_size, c.data.train_size = 40, 64
  c.data.max_source_len = c.data.max_target_len = 8
  c.model.update(model_dim=16, ff_dim=32, num_heads=2, num_layers=1, dropout=0.0,
                 attention_dropout=0.0, relu_dropout=0.0)
  c.train.update(batch_size=16, steps=20, log_every=1)
  c.eval.update(every=1000, num_samples=0, batch_size=64, beam_size=1)
  c.checkpoint.every = 1000
  c.bench.matmul_size = 0
  return _set(c, {**FAST, **overrides})


def rnn_config(**overrides):
  c = config_lib.load_config_file(os.path.join(ROOT, 'configs/dates.py'), 'tiny')
  c.train.update(batch_size=16, steps=20, log_every=1)
  c.eval.update(every=1000, num_samples=0)
  c.checkpoint.every = 1000
  return _set(c, {**FAST, **overrides})


def _set(config, overrides):
  for key, value in overrides.items():
    node = config
    *parents, name = key.split('.')
    for p in parents:
      node = node[p]
    node[name] = value
  return config


def steps(config, n, devices=None, workdir='', save_at=None):
  """Runs n train steps from the workdir's latest checkpoint (or a fresh state),
  without evaluation, saving a checkpoint into workdir after step `save_at`.
  Returns (the losses by step, the parameters after each step, the last state)."""
  exp = train.Experiment(config, workdir, devices)
  state, start = exp.restore() if workdir and not save_at else (exp.fresh_state(), 0)
  if workdir and not save_at:
    exp.checkpointer.close()
  state = exp.runtime.put_state(state, exp.state_shardings)
  step_fn, losses, params = exp.compile_train_step(), {}, {}
  for step in range(start, start + n):
    state, m = step_fn(state, exp.runtime.put_batch(exp.task.train_batch(step)))
    losses[step + 1], params[step + 1] = float(m['loss']), jax.device_get(state.params)
    if save_at == step + 1:
      saver = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), 10)
      saver.save(step + 1, state, wait=True)
      saver.close()
  return losses, params, state


@pytest.fixture(scope='module')
def transformer_mesh():
  return steps(transformer_config(), 10)


@pytest.fixture(scope='module')
def rnn_mesh():
  return steps(rnn_config(), 10)


def assert_close(tree, other, rtol):
  for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(other)):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol / 10)


# --- mixed precision ------------------------------------------------------------------


@pytest.mark.parametrize('kind', ['transformer', 'rnn'])
def test_bf16_trains_with_float32_master_weights_and_resumes_bit_for_bit(
    kind, tmp_path, transformer_mesh, rnn_mesh):
  make, (f32, _, _) = {'transformer': (transformer_config, transformer_mesh),
                       'rnn': (rnn_config, rnn_mesh)}[kind]
  config = lambda: make(**{'model.dtype': 'bfloat16'})
  assert train.Experiment(config(), '').compute_dtype == 'bfloat16'
  losses, params, state = steps(config(), 20, workdir=str(tmp_path), save_at=10)
  assert losses[20] < 0.9 * losses[1]  # random tokens: from ln(40) toward the unigram's.
  assert losses[1] == pytest.approx(f32[1], rel=0.02) and losses[1] != f32[1]
  leaves = jax.tree.leaves((state.params, state.opt_state))
  assert all(x.dtype == jnp.float32 for x in leaves if jnp.issubdtype(x.dtype, jnp.floating))
  saved = ocp.StandardCheckpointer().metadata(tmp_path / 'checkpoints' / '10' / 'default')
  dtypes = {str(m.dtype) for m in jax.tree.leaves(saved.item_metadata)}
  assert 'float32' in dtypes and 'bfloat16' not in dtypes, dtypes
  _, resumed, _ = steps(config(), 10, workdir=str(tmp_path))
  assert train.params_sha256(resumed[20]) == train.params_sha256(params[20])


# --- gradient accumulation ------------------------------------------------------------


@pytest.mark.parametrize('make', [transformer_config, rnn_config], ids=['transformer', 'rnn'])
def test_microbatches_equal_the_whole_batch(make):
  # Plain SGD, so the updated parameters show the gradient itself (Adam's first step
  # is about lr * sign(g), which flips on gradients near zero).
  sgd = {'optimizer.name': 'sgd', 'optimizer.momentum': 0.0}
  whole, whole_params, _ = steps(make(**sgd), 1)
  parts, parts_params, _ = steps(make(**sgd, **{'train.microbatches': 4}), 1)
  assert parts[1] == pytest.approx(whole[1], rel=1e-6)
  assert_close(parts_params[1], whole_params[1], rtol=1e-6)


# --- sharding ---------------------------------------------------------------------------

FSDP = {'parallel.mode': 'fsdp', 'parallel.fsdp_min_size': 64}


def test_fsdp_equals_mesh_and_shards_every_large_leaf(tmp_path, transformer_mesh):
  fsdp, _, state = steps(transformer_config(**FSDP), 10, workdir=str(tmp_path), save_at=5)
  np.testing.assert_allclose(list(fsdp.values()), list(transformer_mesh[0].values()), rtol=1e-5)
  sharded = 0
  for leaf in jax.tree.leaves((state.params, state.opt_state)):
    if leaf.size >= 64 and any(d % 4 == 0 for d in leaf.shape):
      assert leaf.addressable_shards[0].data.size * 4 == leaf.size, leaf.shape
      sharded += 1
  assert sharded >= 10
  # The checkpoint at step 5 continues under mesh on one device as it did under fsdp.
  mesh, _, _ = steps(transformer_config(), 5, devices=jax.devices()[:1], workdir=str(tmp_path))
  assert list(mesh) == [6, 7, 8, 9, 10]
  np.testing.assert_allclose(list(mesh.values()), [fsdp[s] for s in mesh], rtol=1e-5)


def test_a_state_made_on_the_host_equals_the_devices_and_keeps_their_shardings():
  states = {}
  for where in ('device', 'host'):
    exp = train.Experiment(transformer_config(**FSDP, **{'train.init_on': where}), '')
    with exp.task.scope():
      states[where] = exp.fresh_state()
  for a, b in zip(jax.tree.leaves(states['device']), jax.tree.leaves(states['host'])):
    assert a.sharding == b.sharding and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  assert train.params_sha256(states['host'].params) == train.params_sha256(states['device'].params)


def test_a_model_axis_splits_heads_and_hidden_units_with_the_same_losses(transformer_mesh):
  tp, _, state = steps(transformer_config(**{'parallel.mesh_shape': 'data=2,model=2'}), 10)
  np.testing.assert_allclose(list(tp.values()), list(transformer_mesh[0].values()), rtol=1e-5)
  query = state.params['encoder_0']['self_attention']['query']['kernel']  # [d, heads, d_k]
  inner = state.params['encoder_0']['feed_forward']['inner']['kernel']     # [d, d_ff]
  assert query.sharding.spec == jax.sharding.PartitionSpec(None, 'model')
  assert query.addressable_shards[0].data.shape == (16, 1, 8)
  assert inner.addressable_shards[0].data.shape == (16, 16)


# --- remat, profiling, averaging -----------------------------------------------------


def test_remat_gives_the_same_loss_and_gradients():
  def loss_and_grads(remat):
    exp = train.Experiment(transformer_config(**{'model.remat': remat}), '')
    params = exp.fresh_state().params
    batch = exp.task.train_batch(0)
    fn = lambda p: exp.task.loss(p, batch, jax.random.PRNGKey(0))[0]
    return jax.jit(jax.value_and_grad(fn))(params), str(jax.make_jaxpr(jax.grad(fn))(params))

  (loss, grads), plain = loss_and_grads(False)
  (remat_loss, remat_grads), rematerialized = loss_and_grads(True)
  assert 'remat' in rematerialized and 'remat' not in plain
  assert remat_loss == pytest.approx(float(loss), rel=1e-6)
  assert_close(remat_grads, grads, rtol=1e-6)


def test_average_last_is_the_mean_of_the_last_checkpoints(tmp_path):
  config = rnn_config(**{'eval.average_last': 3})
  exp = train.Experiment(config, str(tmp_path))
  fresh = exp.fresh_state()
  saver = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'), 10)
  for step, scale in [(1, 5.0), (2, 1.0), (3, 2.0), (4, 6.0)]:  # integers: exact means.
    params = jax.tree.map(lambda x: jnp.round(x * 8) * scale, fresh.params)
    saver.save(step, fresh.replace(step=jnp.array(step, jnp.int32), params=params), wait=True)
  saver.close()
  exp.restore(required=True)
  averaged = exp.averaged(3)
  exp.checkpointer.close()
  for leaf, base in zip(jax.tree.leaves(averaged.params), jax.tree.leaves(fresh.params)):
    np.testing.assert_array_equal(leaf, np.round(np.asarray(base) * 8) * 3.0)  # (1+2+6)/3.
  assert int(averaged.step) == 4 and (tmp_path / 'averaged' / '4').is_dir()
  with pytest.raises(UserError, match='eval.average_last=5 needs 5 checkpoints, but'):
    exp.averaged(5)


def test_a_run_profiles_its_steps_and_reports_the_averaged_parameters(tmp_path):
  config = rnn_config(**{'train.steps': 4, 'checkpoint.every': 1, 'eval.average_last': 3,
                         'train.profile_steps': '1:3'})
  results = train.train_and_evaluate(config, str(tmp_path))
  traces = list((tmp_path / 'tensorboard' / 'plugins' / 'profile').glob('*/*.xplane.pb'))
  assert len(traces) == 1 and traces[0].stat().st_size > 0
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == [2, 3, 4]
  assert {'averaged/test/exact_match', 'test/exact_match'} <= set(results)
  proc = launch('--config=configs/dates.py:tiny', '--config.train.steps=4',
                '--config.eval.average_last=3', '--mode=eval', f'--workdir={tmp_path}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  evaluated = json.loads((tmp_path / 'eval_results.json').read_text())
  assert evaluated['averaged/test/exact_match'] == results['averaged/test/exact_match']


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize('overrides, message', [
    ({'model.dtype': 'float16'}, "model.dtype='float16' is not a dtype"),
    ({'parallel.mesh_shape': 'data=3,model=2'}, 'holds 6 device(s), but there are 4'),
    ({'parallel.mesh_shape': 'data=1,model=4'}, "'heads' axis of"),
    ({'train.microbatches': 3}, 'train.microbatches=3 must be >= 1 and divide the per-device'),
    ({'train.profile_steps': '8:30'}, "train.profile_steps='8:30'"),
    ({'train.init_on': 'gpu'}, "train.init_on='gpu' is out of range"),
    ({'parallel.mode': 'zero'}, "unknown parallel.mode 'zero'"),
])
def test_bad_accelerator_settings_are_clear_errors(overrides, message, tmp_path):
  with pytest.raises(UserError, match=re.escape(message)):
    train.train_and_evaluate(transformer_config(**overrides), str(tmp_path))


def test_accelerator_presets_load_with_token_budgets_and_bf16():
  load = lambda p: config_lib.load_config_file(os.path.join(ROOT, 'configs/transformer.py'), p)
  base, big, gpu = load('base'), load('big'), load('bench_gpu')
  assert base.data.batch_tokens == big.data.batch_tokens == 25_000 and big.model.remat
  assert base.model.dtype == 'auto' and gpu.model.dtype == 'bfloat16'
  assert base.model.attention_impl == big.model.attention_impl == 'auto'
  assert gpu.train.batch_size * gpu.data.max_target_len == 65_536
  config = transformer_config(**{'data.batch_tokens': 100})
  exp = train.Experiment(config, '')
  batch = exp.task.train_batch(0)
  assert batch['src'].shape == (12, 8)  # 100 // 8 = 12 rows, a multiple of the 4 devices.
