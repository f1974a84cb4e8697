"""The shared loop: exact resume after kill -9 or SIGTERM, and layout-independent results."""
import json
import re
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, launch
from research import benchmark, config as config_lib, metric_log, optim, train

RESUME_ARGS = ['--config=configs/dates.py:tiny', '--config.train.steps=400',
               '--config.checkpoint.every=25', '--config.eval.every=200',
               '--config.train.log_every=50']


def _checkpoint_steps(workdir):
  path = workdir / 'checkpoints'
  return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.exists() else []


def _start_and_interrupt(workdir, sig, args=RESUME_ARGS):
  """Starts a run, waits for its first checkpoint, then sends `sig`."""
  proc = subprocess.Popen([sys.executable, 'launch.py', *args, f'--workdir={workdir}'],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while not _checkpoint_steps(workdir) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  assert proc.poll() is None, 'the run finished before it could be interrupted'
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=120)
  return proc.returncode, out, err


@pytest.fixture(scope='module')
def uninterrupted_sha(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  proc = launch(*RESUME_ARGS, f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert _checkpoint_steps(workdir) == [350, 375, 400]  # checkpoint.keep=3 of 16 saves.
  return json.loads((workdir / 'results.json').read_text())['params_sha256']


def test_kill_9_then_rerun_gives_bit_identical_parameters(tmp_path, uninterrupted_sha):
  code, _, _ = _start_and_interrupt(tmp_path, signal.SIGKILL)
  assert code == -signal.SIGKILL
  killed_at = _checkpoint_steps(tmp_path)
  assert killed_at and max(killed_at) < 400 and not (tmp_path / 'results.json').exists()
  proc = launch(*RESUME_ARGS, f'--workdir={tmp_path}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f'restored checkpoint at step {max(killed_at)}' in proc.stderr
  assert json.loads((tmp_path / 'results.json').read_text())['params_sha256'] == uninterrupted_sha
  steps = [r['step'] for r in metric_log.read(tmp_path / 'metrics.jsonl') if 'train/loss' in r]
  assert steps == sorted(set(steps)), 'metrics.jsonl repeats steps after resume'


def test_sigterm_saves_exits_0_and_resumes_exactly(tmp_path, uninterrupted_sha):
  code, out, _ = _start_and_interrupt(tmp_path, signal.SIGTERM)
  assert code == 0
  assert 'SIGTERM received: saved a checkpoint at step' in out
  assert 'Run the same command again to resume' in out
  saved_at = int(out.split('checkpoint at step ')[1].split('/')[0])
  assert saved_at in _checkpoint_steps(tmp_path)
  proc = launch(*RESUME_ARGS, f'--workdir={tmp_path}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f'restored checkpoint at step {saved_at}' in proc.stderr
  assert json.loads((tmp_path / 'results.json').read_text())['params_sha256'] == uninterrupted_sha


FSDP_ARGS = RESUME_ARGS[:1] + ['--config.train.steps=150', '--config.checkpoint.every=25',
                                '--config.eval.every=150', '--config.parallel=fsdp',
                                '--config.parallel.fsdp_min_size=16']


def test_kill_9_under_fsdp_resumes_bit_for_bit(tmp_path):
  reference = launch(*FSDP_ARGS, f'--workdir={tmp_path / "straight"}')
  assert reference.returncode == 0, reference.stderr[-2000:]
  assert 'fsdp' in reference.stderr
  code, _, _ = _start_and_interrupt(tmp_path / 'killed', signal.SIGKILL, FSDP_ARGS)
  assert code == -signal.SIGKILL
  killed_at = max(_checkpoint_steps(tmp_path / 'killed'))
  proc = launch(*FSDP_ARGS, f'--workdir={tmp_path / "killed"}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f'restored checkpoint at step {killed_at}' in proc.stderr
  sha = lambda name: json.loads((tmp_path / name / 'results.json').read_text())['params_sha256']
  assert sha('killed') == sha('straight')


def _losses(tmp_path, name, devices, parallel='mesh', dropout=0.0):
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs/dates.py'), 'tiny')
  config.train.steps, config.train.log_every, config.eval.every = 4, 1, 100
  config.parallel.mode, config.model.dropout = parallel, dropout
  workdir = str(tmp_path / name)
  train.train_and_evaluate(config, workdir, devices=devices)
  return np.array([r['train/loss'] for r in metric_log.read(os.path.join(workdir, 'metrics.jsonl'))
                   if 'train/loss' in r])


def test_one_device_equals_four_devices_and_mesh_equals_pmap(tmp_path):
  assert jax.device_count() == 4
  one = _losses(tmp_path, 'one', jax.devices()[:1])
  four = _losses(tmp_path, 'four', jax.devices())
  pmap = _losses(tmp_path, 'pmap', jax.devices(), parallel='pmap')
  assert len(one) == 4 and np.all(np.isfinite(one))
  assert len(set(one.tolist())) > 1  # the model is learning, so the check has teeth.
  np.testing.assert_allclose(four, one, rtol=1e-5)
  np.testing.assert_allclose(pmap, one, rtol=1e-5)


def test_dropout_masks_do_not_depend_on_the_device_count(tmp_path):
  one = _losses(tmp_path, 'one', jax.devices()[:1], dropout=0.3)
  four = _losses(tmp_path, 'four', jax.devices(), dropout=0.3)
  no_dropout = _losses(tmp_path, 'none', jax.devices()[:1])
  assert not np.allclose(one, no_dropout)
  np.testing.assert_allclose(four, one, rtol=1e-5)


def test_batch_that_does_not_divide_over_devices_is_a_clear_error(tmp_path):
  proc = launch('--config=configs/dates.py:tiny', '--config.train.batch_size=6',
                f'--workdir={tmp_path}')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      'error: train.batch_size=6 does not divide evenly over 4 devices; use a multiple of 4')


def test_matmul_flops_counts_every_scan_iteration_and_the_backward_pass():
  m, k, steps = 3, 4, 7
  x, w = jnp.ones((m, k)), jnp.ones((k, k))

  def loss(w):
    def body(carry, _):
      return jnp.tanh(carry @ w), None
    return jax.lax.scan(body, x, None, length=steps)[0].sum()

  one = 2 * m * k * k
  assert benchmark.matmul_flops(jax.make_jaxpr(loss)(w).jaxpr) == steps * one
  # Backward: g @ w^T for the carry and carry^T @ g for w, at every step.
  assert benchmark.matmul_flops(jax.make_jaxpr(jax.grad(loss))(w).jaxpr) == 3 * steps * one


def _fused_attention_jaxpr(name, b, t, s, n, h, mask_type):
  """A jaxpr of one primitive named as cuDNN's attention primitives are, for counting."""
  prim = jax.extend.core.Primitive(name)
  prim.def_abstract_eval(lambda q, k, **_: q)
  q, k = jnp.ones((b, t, n, h), jnp.bfloat16), jnp.ones((b, s, n, h), jnp.bfloat16)
  return jax.make_jaxpr(lambda q, k: prim.bind(q, k, mask_type=mask_type))(q, k).jaxpr


def test_matmul_flops_counts_fused_attention_by_its_mask():
  class Mask:  # cuDNN's MaskType members carry a name.
    def __init__(self, name):
      self.name = name

  b, t, s, n, h = 2, 8, 6, 3, 4
  full = 4 * b * n * t * s * h  # Q K^T and P V.
  count = lambda name, mask: benchmark.matmul_flops(
      _fused_attention_jaxpr(name, b, t, s, n, h, Mask(mask)))
  assert count('dot_product_attention_fwd_wrapper', 'NO_MASK') == full
  assert count('dot_product_attention_fwd_wrapper', 'CAUSAL') == full / 2
  assert count('dot_product_attention_bwd_wrapper', 'PADDING_CAUSAL') == full
  assert count('dot_product_attention_bwd_wrapper', 'PADDING') == 2 * full


def test_kernel_times_counts_a_gpu_streams_kernels_by_class(tmp_path):
  """A Perfetto trace as jax.profiler writes it for a GPU: XLA's op line repeats the
  stream's kernels, and host threads are not device time."""
  import gzip
  meta = lambda pid, tid, what, name: {'ph': 'M', 'pid': pid, 'tid': tid, 'name': what,
                                       'args': {'name': name}}
  span = lambda pid, tid, name, dur, op='': {'ph': 'X', 'pid': pid, 'tid': tid, 'ts': 0,
                                             'dur': dur, 'name': name, 'args': {'hlo_op': op}}
  events = [meta(1, 0, 'process_name', '/host:CPU'), meta(2, 0, 'process_name', '/device:GPU:0'),
            meta(2, 7, 'thread_name', 'Stream #14(Compute)'), meta(2, 8, 'thread_name', 'XLA Ops'),
            span(1, 0, 'block_until_ready', 9000.0),
            span(2, 7, 'nvjet_sm90_tst_128x128_NNT', 3000.0, 'dot.1'),
            span(2, 7, 'nvjet_sm90_tst_128x128_NNT', 1000.0, 'dot.1'),
            span(2, 7, 'cudnn_generated_fort_native_sdpa_sm90_flash_fprop', 2000.0),
            span(2, 7, 'input_scatter_fusion', 500.0, 'scatter'),
            span(2, 8, 'dot.1', 4000.0)]
  path = tmp_path / 'perfetto_trace.json.gz'
  with gzip.open(path, 'wt') as f:
    json.dump({'traceEvents': events}, f)
  times = benchmark.kernel_times(str(path))
  assert times['classes'] == {'matmul': 4.0, 'attention': 2.0, 'other': 0.5}
  assert times['kernels'][0] == (4.0, 2, 'matmul', 'nvjet_sm90_tst_128x128_NNT', 'dot.1')
  assert times['threads'] == {'/device:GPU:0 Stream #14(Compute)': 6.5, '/device:GPU:0 XLA Ops': 4.0}
  # With the optimized HLO, XLA's own kernels are grouped by the ops they ran for.
  hlo = ('  %input_scatter_fusion.2 = bf16[80,8]{1,0} fusion(%a, %b), kind=kInput, '
         'calls=%fused_scatter, metadata={op_name="jit(step)/transpose(jvp(Model.encode))/'
         'encoder_3/embed/jit(_take)/scatter-add" deduplicated_name="input_scatter_fusion"}\n'
         '  ROOT %tuple = (f32[2]) tuple(%x)\n')
  assert benchmark.hlo_op_names(hlo)['input_scatter_fusion'].endswith('/scatter-add')
  assert benchmark.op_group('jit(step)/jvp(M.decode)/decoder_11/decoder_11.residual/ff/inner/add'
                            ) == 'fwd ff/inner'
  assert benchmark.op_group('jit(step)/add') == 'step add'
  groups = benchmark.kernel_times(str(path), hlo)['groups']
  assert groups == {'matmul: library kernels': 4.0, 'attention: library kernels': 2.0,
                    'bwd encoder_N/embed': 0.5}


def test_benchmark_times_compilation_apart_and_profiles_more_steps(tmp_path):
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs/lm.py'), 'tiny')
  config.data.name, config.bench.profile_steps = 'random', 2
  row = train.benchmark(config, str(tmp_path))
  assert row['steps'] == 2 and {'first_step_seconds', 'init_seconds'} <= set(row)
  traces = list((tmp_path / 'tensorboard').glob('plugins/profile/*/perfetto_trace.json.gz'))
  assert len(traces) == 1
  # On a CPU the trace holds the host's spans: the traced calls of the named step among them.
  calls = sum(n for _, n, _, name, _ in benchmark.kernel_times(str(traces[0]))['kernels']
              if name == 'PjitFunction(train_step_fn)')
  assert calls >= 2
  proc = subprocess.run([sys.executable, str(ROOT / 'benchmarks/kernel_times.py'), str(tmp_path)],
                        capture_output=True, text=True)
  assert proc.returncode == 0 and 'class' in proc.stdout, proc.stderr[-2000:]


def test_warmup_times_cosine_is_torch_gpts_schedule():
  cfg = config_lib.base_config().optimizer
  cfg.update(learning_rate=1e-3, warmup_steps=100, schedule='warmup_times_cosine')
  schedule = optim.make_schedule(cfg, 3000)
  for i in (0, 1, 50, 99, 100, 1500, 2999):  # torch_gpt.py's lr at its step i.
    want = 1e-3 * min(1.0, (i + 1) / 100) * 0.5 * (1 + np.cos(np.pi * i / 3000))
    assert float(schedule(jnp.int32(i))) == pytest.approx(want, rel=1e-5, abs=1e-9), i
  cfg.final_lr_fraction = 0.1  # a floor, held past the last step.
  floored = optim.make_schedule(cfg, 3000)
  assert float(floored(jnp.int32(3000))) == float(floored(jnp.int32(4000))) == pytest.approx(1e-4)
  cfg.final_lr_fraction, cfg.schedule = 0.0, 'cosine'  # ramps from 0, decays from the peak.
  cosine = optim.make_schedule(cfg, 3000)
  assert float(cosine(0)) == 0.0 and float(cosine(100)) == pytest.approx(1e-3)


def test_the_nanogpt_schedule_is_nanogpts_get_lr():
  cfg = config_lib.base_config().optimizer
  cfg.update(learning_rate=1e-3, warmup_steps=100, schedule='nanogpt', final_lr_fraction=0.1)
  schedule = optim.make_schedule(cfg, 3000)
  for i in (0, 1, 50, 99, 100, 101, 1500, 2999, 3000):  # torch_gpt.py's lr at its step i.
    if i < 100:
      want = 1e-3 * (i + 1) / 101
    else:
      want = 1e-4 + 0.5 * (1 + np.cos(np.pi * (i - 100) / 2900)) * 0.9e-3
    assert float(schedule(jnp.int32(i))) == pytest.approx(want, rel=1e-5, abs=1e-9), i


def test_perplexity_is_exp_of_the_mean_nll_over_real_target_tokens():
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs/dates.py'), 'tiny')
  config.eval.batch_size = 8  # several batches, the last one partial.
  exp = train.Experiment(config, '')
  params = exp.fresh_state().params
  arrays = exp.task.data.arrays['validation']
  arrays['tgt'] = arrays['tgt'].copy()
  arrays['tgt'][::3, 7:] = 0  # dates are all one length: pad some targets by hand.
  logits, _ = exp.task.model.forward(params, arrays['src'],
                                     exp.task.teacher_inputs(arrays['tgt']))
  logp = jax.nn.log_softmax(np.asarray(logits, np.float64))
  nll = -np.take_along_axis(logp, arrays['tgt'][..., None], axis=-1)[..., 0]
  mask = arrays['tgt'] != 0
  assert len(arrays['src']) % 8 and mask.sum() < mask.size  # partial batch, padding.
  assert exp.task.perplexity(params, 'validation') == pytest.approx(
      np.exp(nll[mask].mean()), rel=1e-4)


def test_prefetch_makes_batches_ahead_in_order_and_passes_errors_on():
  import threading  # pylint: disable=g-import-not-at-top
  from research.data import pipeline  # pylint: disable=g-import-not-at-top
  made, threads = [], {}

  def make(step):
    made.append(step)
    threads[step] = threading.current_thread().name
    if step == 6:
      raise ValueError('bad step 6')
    return {'x': np.full(2, step)}

  with pipeline.Prefetch(make, lambda host: host['x'] * 10, 0, 8) as batches:
    assert threads[0] == threading.current_thread().name  # the first, on the caller's thread.
    host, placed = batches.get(0)
    deadline = time.time() + 10
    while len(made) < 4 and time.time() < deadline:  # steps 1 and 2 queued, 3 being made.
      time.sleep(0.01)
    assert made[:4] == [0, 1, 2, 3] and threads[1] == 'prefetch'
    assert placed.tolist() == [0, 0] and host['x'].tolist() == [0, 0]
    assert [batches.get(s)[1][0] for s in range(1, 6)] == [10, 20, 30, 40, 50]
    with pytest.raises(ValueError, match='bad step 6'):
      batches.get(6)


def test_metrics_are_fetched_only_at_logs_evaluations_and_checkpoints(tmp_path, monkeypatch):
  fetched = []
  real = train._fetch  # pylint: disable=protected-access
  monkeypatch.setattr(train, '_fetch', lambda pending, saved: (
      fetched.append([d for d, _ in pending]), real(pending, saved))[1])
  config = config_lib.load_config_file(str(ROOT / 'configs/dates.py'), 'tiny')
  config.train.update(steps=12, log_every=5)
  config.eval.every, config.checkpoint.every = 12, 6
  train.train_and_evaluate(config, str(tmp_path))
  assert fetched == [[1, 2, 3, 4, 5], [6], [7, 8, 9, 10], [11, 12]]
  losses = [r['step'] for r in metric_log.read(tmp_path / 'metrics.jsonl') if 'train/loss' in r]
  assert losses == [5, 10, 12]


def test_a_non_finite_loss_between_fetches_is_named_and_never_saved(tmp_path):
  config = config_lib.load_config_file(str(ROOT / 'configs/dates.py'), 'tiny')
  config.optimizer.update(learning_rate=1e35, warmup_steps=0, schedule='constant',
                          grad_clip_norm=0.0)
  config.train.update(steps=40, log_every=4)
  config.eval.every, config.checkpoint.every = 40, 4
  with pytest.raises(train.NonFiniteError, match=r'at step (\d+) .*stopped at step (\d+)') as e:
    train.train_and_evaluate(config, str(tmp_path))
  bad, stopped = map(int, re.search(r'at step (\d+) .*stopped at step (\d+)', str(e.value)).groups())
  assert bad <= stopped < bad + 4 and stopped % 4 == 0
  saved = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
  assert all(s < bad for s in saved) and f'checkpoint (step {max(saved, default=0)})' in str(e.value)
