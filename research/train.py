"""The one training loop every model shares, and the other modes of launch.py.

The train step is a pure function (state, batch) -> (state, metrics). Data
order comes from (seed, step) and dropout keys from fold_in(key(seed), step),
so a run stopped anywhere and resumed ends with bit-identical parameters.
"""
import hashlib
import json
import os
import resource
import signal
import time
from typing import Any

import flax
import jax
import jax.extend  # pylint: disable=unused-import  (jax.extend.core for matmul_flops)
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from research import checkpoint, config as config_lib, distributed, metrics as metrics_lib, plots
from research import tasks
from research.data.vocab import PAD
from research.errors import NonFiniteError, UserError
from research.parallel import Runtime

# Random bits depend on the logical shape only, not on how arrays are sharded,
# so dropout masks are the same on 1 device and on N.
jax.config.update('jax_threefry_partitionable', True)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step).


# --- optimizer ------------------------------------------------------------------


def make_schedule(cfg, total_steps: int):
  lr, warmup = cfg.learning_rate, cfg.warmup_steps
  if cfg.schedule == 'constant':
    main = optax.constant_schedule(lr)
  elif cfg.schedule == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup), cfg.final_lr_fraction)
  elif cfg.schedule == 'linear':
    main = optax.linear_schedule(lr, lr * cfg.final_lr_fraction, max(1, total_steps - warmup))
  elif cfg.schedule == 'rsqrt':  # Vaswani et al. 2017, peaking at `lr` after warmup.
    main = lambda s: lr * jnp.sqrt(max(1, warmup) / jnp.maximum(s + warmup, 1))
  else:
    raise UserError(f'unknown optimizer.schedule {cfg.schedule!r}; '
                    'use constant, cosine, linear or rsqrt')
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(cfg, total_steps: int):
  schedule = make_schedule(cfg, total_steps)
  if cfg.name == 'adam':
    opt = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  elif cfg.name == 'adamw':
    opt = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
  elif cfg.name == 'sgd':
    opt = optax.sgd(schedule, momentum=cfg.momentum or None)
  else:
    raise UserError(f'unknown optimizer.name {cfg.name!r}; use adam, adamw or sgd')
  if cfg.grad_clip_norm:
    opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), opt)
  return opt, schedule


# --- the train step -----------------------------------------------------------------


def train_step(state: TrainState, batch, *, loss_fn, tx, schedule, axis_name=None):
  """One update. Gradients are of the loss summed over the global batch,
  divided by the global weight (token count), so sharding does not matter."""
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:  # pmap: each device draws its own dropout masks.
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  def objective(params):
    loss_sum, weight, sums = loss_fn(params, batch, rng)
    return loss_sum, (weight, sums)

  (loss_sum, (weight, sums)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  if axis_name is not None:
    grads, loss_sum, weight, sums = jax.lax.psum((grads, loss_sum, weight, sums), axis_name)
  grads = jax.tree.map(lambda g: g / weight, grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {'loss': loss_sum / weight, 'grad_norm': optax.tree.norm(grads),
             'learning_rate': schedule(state.step),
             **{k: v / weight for k, v in sums.items()}}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def init_state(task, tx, seed: int) -> TrainState:
  params = task.init(jax.random.PRNGKey(seed))
  # Tasks with their own update rule may keep their own optimizer state (GloVe's AdaGrad).
  opt_state = task.init_opt_state(params) if hasattr(task, 'init_opt_state') else tx.init(params)
  return TrainState(step=jnp.array(0, jnp.int32), params=params, opt_state=opt_state,
                    rng=jax.random.fold_in(jax.random.PRNGKey(seed), 1))


def params_sha256(params) -> str:
  """A fingerprint of the parameters: names, shapes, dtypes and exact bytes."""
  h = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(params),
                           key=lambda kv: jax.tree_util.keystr(kv[0])):
    leaf = np.asarray(jax.device_get(leaf))
    h.update(f'{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};'.encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


# --- setup shared by the modes ------------------------------------------------------


class Experiment:
  """The task, runtime, optimizer and (possibly restored) state of one workdir."""

  def __init__(self, config, workdir: str, devices=None):
    self.config, self.workdir = config, workdir
    self.runtime = Runtime.create(config.parallel, devices)
    self.runtime.check_batch_size(config.train.batch_size)
    self.task = tasks.build(config, self.runtime, workdir)
    self.tx, self.schedule = make_optimizer(config.optimizer, config.train.steps)
    self.checkpointer = None

  def fresh_state(self) -> TrainState:
    # Built directly with replicated outputs, so every process holds its copy.
    return jax.jit(lambda: init_state(self.task, self.tx, self.config.seed),
                   out_shardings=self.runtime.replicated)()

  def compile_train_step(self):
    if hasattr(self.task, 'train_step'):  # a task with its own update rule (word2vec's sparse SGD).
      if self.runtime.mode == 'pmap':
        raise UserError(f'task {self.config.task!r} runs with parallel=mesh only')
      return self.runtime.compile_train_step(
          lambda state, batch, axis_name=None: self.task.train_step(state, batch, self.schedule))
    return self.runtime.compile_train_step(
        lambda state, batch, axis_name=None: train_step(
            state, batch, loss_fn=self.task.loss, tx=self.tx, schedule=self.schedule,
            axis_name=axis_name))

  @property
  def eval_splits(self):
    """The splits evaluated at the end; the first is also evaluated during training."""
    return getattr(self.task, 'eval_splits', ('validation', 'test'))

  def restore(self, required: bool = False):
    """(state, step): the latest checkpoint of the workdir, else a fresh state."""
    self.checkpointer = checkpoint.Checkpointer(
        os.path.join(self.workdir, 'checkpoints'), self.config.checkpoint.keep)
    fresh = self.fresh_state()
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), fresh)
    state, step = self.checkpointer.restore_latest(abstract)
    if state is None:
      if required:
        raise UserError(f'no checkpoint found in {self.workdir}/checkpoints; train first')
      return fresh, 0
    logging.info('restored checkpoint at step %d from %s', step, self.workdir)
    return state, step

  def evaluate(self, params, split: str) -> dict:
    prefix = f'{split}/' if split else ''
    return {prefix + k: v for k, v in self.task.evaluate(params, split).items()}


def _is_main() -> bool:
  return jax.process_index() == 0


def _write_json(path: str, obj):
  if _is_main():
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


class _StopRequest:
  """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

  def __init__(self):
    self.signal = None

  def __enter__(self):
    self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
    return self

  def _handle(self, signum, frame):
    del frame
    self.signal = signal.Signals(signum).name

  def requested(self) -> str | None:
    """The signal name if any process got one; all processes agree (multi-host)."""
    if jax.process_count() == 1:
      return self.signal
    flags = multihost_utils.process_allgather(np.int32(self.signal is not None))
    return (self.signal or 'SIGTERM') if np.any(flags) else None

  def __exit__(self, *exc):
    for s, handler in self._old.items():
      signal.signal(s, handler)


def _fmt_time(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


# --- modes ----------------------------------------------------------------------------


def train_and_evaluate(config, workdir: str, devices=None, resume_command: str = '',
                       process_start: float | None = None) -> dict:
  """Trains with periodic eval and checkpoints, then tests; returns results.
  process_start (time.time() at the process's start) times the whole process in
  results' time/start_to_trained_seconds; without it, this call is timed."""
  t_start = time.time()
  process_start = process_start or t_start
  os.makedirs(workdir, exist_ok=True)
  distributed.check_shared_workdir(workdir)
  exp = Experiment(config, workdir, devices)
  runtime, task, cfg = exp.runtime, exp.task, config
  state, start_step = exp.restore()
  results_path = os.path.join(workdir, 'results.json')
  if start_step >= config.train.steps and os.path.exists(results_path):
    exp.checkpointer.close()
    logging.info('this run already finished at step %d; results in %s', start_step, results_path)
    with open(results_path) as f:
      return json.load(f)
  exp.checkpointer.set_aside_unreadable()
  _write_json(os.path.join(workdir, 'config.json'), config_lib.to_dict(config))
  writer = metrics_lib.MetricWriter(workdir, start_step)
  total = cfg.train.steps
  step_fn = exp.compile_train_step()
  logging.info('training %s on %d %s device(s) (%s), steps %d -> %d, workdir %s',
               cfg.name, runtime.num_devices, jax.devices()[0].platform, cfg.parallel,
               start_step, total, workdir)

  state = runtime.put_state(state)
  last_saved = start_step
  window, window_start, t_window, eval_seconds = [], start_step, time.time(), 0.0
  last_eval = (-1, {})  # (step, metrics) of the latest periodic evaluation.
  # train_batch is a pure function of the step, so the next batch is built while the
  # device runs this one.
  batch = runtime.put_batch(task.train_batch(start_step)) if start_step < total else None
  with _StopRequest() as stop:
    for step in range(start_step, total):
      state, metrics = step_fn(state, batch)
      if step + 1 < total:
        batch = runtime.put_batch(task.train_batch(step + 1))
      metrics = jax.device_get(metrics)
      done = step + 1
      if done == total:  # start, data, compile and training, before the final evaluation
        # and files: the peers' "end to end (corpus read, vocabulary, training)".
        trained_seconds = time.time() - process_start
      if not (np.isfinite(metrics['loss']) and np.isfinite(metrics['grad_norm'])):
        exp.checkpointer.close()
        writer.close()
        raise NonFiniteError(
            f'non-finite {"loss" if not np.isfinite(metrics["loss"]) else "gradient"} '
            f'at step {done} (loss={metrics["loss"]}, grad_norm={metrics["grad_norm"]}); '
            f'stopped, the last good checkpoint (step {last_saved}) is kept')
      window.append(metrics)
      stopping = stop.requested()

      if done % cfg.train.log_every == 0 or done == total:
        elapsed = time.time() - t_window - eval_seconds
        rate = (done - window_start) / max(elapsed, 1e-9)
        mean = {f'train/{k}': float(np.mean([m[k] for m in window])) for k in window[0]}
        mean['train/steps_per_second'] = rate
        writer.write(done, mean)
        logging.info('step %d/%d  loss %.4f  %.1f steps/s  ETA %s', done, total,
                     mean['train/loss'], rate, _fmt_time((total - done) / max(rate, 1e-9)))
        window, window_start, t_window, eval_seconds = [], done, time.time(), 0.0

      if done % cfg.eval.every == 0 or done == total:
        t_eval = time.time()
        params = runtime.global_state(state).params
        ev = exp.evaluate(params, exp.eval_splits[0])
        last_eval = (done, dict(ev))  # the final results reuse it rather than decode again.
        ev['time/elapsed_seconds'] = time.time() - t_start  # this process, compile included.
        writer.write(done, ev)
        logging.info('step %d eval: %s', done, _fmt_metrics(ev))
        for src, hyp, ref in task.samples(params, exp.eval_splits[0], cfg.eval.num_samples):
          if _is_main():
            logging.info('  %-32r -> %-14r %s', src, hyp, '✓' if hyp == ref else f'(want {ref!r})')
        eval_seconds += time.time() - t_eval  # keep eval time out of steps/s.

      if done % cfg.checkpoint.every == 0 or done == total or stopping:
        exp.checkpointer.save(done, runtime.global_state(state), wait=bool(stopping))
        last_saved = done
      if stopping and done < total:
        exp.checkpointer.close()
        writer.close()
        msg = (f'{stopping} received: saved a checkpoint at step {done}/{total} in '
               f'{workdir}. Run the same command again to resume'
               + (f':\n  {resume_command}' if resume_command else '.'))
        print(msg, flush=True)
        return {'interrupted_at_step': done}

  exp.checkpointer.close()
  state = runtime.global_state(state)
  results = {'step': int(state.step)}
  for split in exp.eval_splits:
    if split == exp.eval_splits[0] and last_eval[0] == results['step']:
      results.update(last_eval[1])
    else:
      results.update(exp.evaluate(state.params, split))
  writer.write(int(state.step), {k: v for k, v in results.items() if k != 'step'})
  writer.close()
  results['params_sha256'] = params_sha256(state.params)
  results['num_params'] = int(sum(np.size(x) for x in jax.tree.leaves(state.params)))
  if hasattr(task, 'final_results'):  # e.g. regression's coefficients and diagnostics.
    results.update(task.final_results(state.params))
  results['wall_seconds'] = time.time() - t_start
  if start_step < total:
    results['time/start_to_trained_seconds'] = trained_seconds
  _write_json(results_path, results)
  task.write_artifacts(state.params, workdir)  # collective: decodes on every process.
  if _is_main():
    plots.metric_curves(metrics_lib.read(writer.path), os.path.join(workdir, 'plots', 'metrics.png'))
  logging.info('final: %s', _fmt_metrics(results))
  return results


def evaluate(config, workdir: str, devices=None) -> dict:
  exp = Experiment(config, workdir, devices)
  state, step = exp.restore(required=True)
  exp.checkpointer.close()
  results = {'step': step}
  for split in exp.eval_splits:
    results.update(exp.evaluate(state.params, split))
  # Beside results.json, never over it: this config's eval settings may differ from training's.
  _write_json(os.path.join(workdir, 'eval_results.json'), results)
  print(json.dumps(results, sort_keys=True), flush=True)
  return results


def predict(config, workdir: str, lines: list[str], devices=None) -> list[str]:
  exp = Experiment(config, workdir, devices)
  state, _ = exp.restore(required=True)
  exp.checkpointer.close()
  return exp.task.predict(state.params, lines)


def benchmark(config, workdir: str = '', devices=None) -> dict:
  """Times train steps after warm-up (compilation excluded); returns the JSON row.
  With bench.what=decode, times translating the test split instead."""
  what = config.bench.get('what', 'train')
  if what == 'decode':
    return _benchmark_decode(config, workdir, devices)
  if what != 'train':
    raise UserError(f'unknown bench.what {what!r}; use train or decode')
  exp = Experiment(config, workdir='', devices=devices)
  runtime, task = exp.runtime, exp.task
  state = runtime.put_state(exp.fresh_state())
  step_fn = exp.compile_train_step()
  warmup, steps = config.bench.warmup_steps, config.bench.steps
  batches = [task.train_batch(i) for i in range(warmup + steps)]
  # On the devices before the clock starts: the peers time compute on data in memory.
  device_batches = [runtime.put_batch(b) for b in batches]
  units = {}
  for i, (batch, device_batch) in enumerate(zip(batches, device_batches)):
    if i == warmup:
      jax.block_until_ready((state, device_batches))
      t0 = time.perf_counter()
    if i >= warmup:
      for k, v in task.units(batch).items():
        units[k] = units.get(k, 0) + v
    state, metrics = step_fn(state, device_batch)
  jax.block_until_ready((state, metrics))
  seconds = time.perf_counter() - t0
  row = {
      'config': config.name,
      'devices': runtime.num_devices,
      'platform': jax.devices()[0].platform,
      'steps': steps,
      'seconds': round(seconds, 4),
      'steps_per_second': round(steps / seconds, 3),
      **{_per_second(k): round(v / seconds, 2) for k, v in units.items()},
  }
  flops = _timed_flops(step_fn, state, batches[warmup:])
  if flops and config.bench.get('matmul_size', 0):
    flops /= runtime.num_devices  # per device, against one device's matmul rate.
    peak = matmul_peak_flops(config.bench.matmul_size, runtime.mesh.local_devices[0])
    achieved = flops / seconds
    sig = lambda x: float(f'{x:.4g}')
    row.update(step_gflops=sig(flops / steps / 1e9), achieved_gflops=sig(achieved / 1e9),
               matmul_peak_gflops=sig(peak / 1e9), mfu=sig(achieved / peak))
  if hasattr(task, 'benchmark_fields'):  # e.g. regression's fit_seconds and held-out R^2.
    row.update(task.benchmark_fields(runtime.global_state(state).params, seconds, steps))
  row['peak_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  return row


def _per_second(unit: str) -> str:
  """'tokens' -> 'tokens_per_second'; 'words_effective' -> 'words_per_second_effective'."""
  base, _, qualifier = unit.partition('_')
  return f'{base}_per_second' + (f'_{qualifier}' if qualifier else '')


def _benchmark_decode(config, workdir, devices):
  """Sentences/s decoding the test split (eval.beam_size, model.kv_cache) with the
  workdir's latest checkpoint, or fresh parameters when there is none. A first
  pass compiles every batch shape; the second is timed."""
  exp = Experiment(config, workdir, devices)
  if workdir and os.path.isdir(os.path.join(workdir, 'checkpoints')):
    state, step = exp.restore(required=True)
    exp.checkpointer.close()
  else:
    state, step = exp.fresh_state(), 0
  src = exp.task.arrays['test']['src']
  exp.task.translate_ids(state.params, src)  # warm-up: compiles.
  t0 = time.perf_counter()
  tokens, _ = exp.task.translate_ids(state.params, src)
  seconds = time.perf_counter() - t0
  return {
      'config': config.name,
      'devices': exp.runtime.num_devices,
      'platform': jax.devices()[0].platform,
      'what': 'decode',
      'checkpoint_step': step,
      'beam_size': config.eval.get('beam_size', 1),
      'kv_cache': config.model.get('kv_cache', None),
      'steps': -(-len(src) // config.eval.batch_size),
      'seconds': round(seconds, 4),
      'examples_per_second': round(len(src) / seconds, 2),
      'tokens_per_second': round(int((tokens != PAD).sum()) / seconds, 2),
      'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
  }


def _timed_flops(step_fn, state, batches):
  """Matmul flops summed over the timed steps (each batch shape traced once);
  None under pmap."""
  if not hasattr(step_fn, 'lower'):
    return None
  per_shape = {}
  total = 0.0
  for batch in batches:
    shape = tuple(x.shape for x in jax.tree.leaves(batch))
    if shape not in per_shape:  # traced on shapes alone: nothing is copied to the devices.
      abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
      per_shape[shape] = matmul_flops(jax.make_jaxpr(step_fn)(state, abstract).jaxpr)
    total += per_shape[shape]
  return total


def matmul_flops(jaxpr) -> float:
  """2 * M * N * K for every dot_general, the forward and backward passes both, with
  loop bodies counted once per iteration (scan length). The model FLOPs of MFU."""
  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      (contract, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in contract])
      continue
    inner = []
    for value in eqn.params.values():
      for v in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(v, jax.extend.core.ClosedJaxpr):
          inner.append(v.jaxpr)
        elif isinstance(v, jax.extend.core.Jaxpr):
          inner.append(v)
    if inner:  # cond: the costliest branch; scan: every iteration; the rest: once.
      flops = max(matmul_flops(j) for j in inner)
      total += flops * eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else flops
  return total


def matmul_peak_flops(n: int, device, repeats: int = 5, chain: int = 8) -> float:
  """One device's f32 matmul rate at the default precision: the best of `repeats`
  runs of `chain` dependent [n, n] x [n, n] products in one program (so dispatch
  does not count), the denominator of model FLOP utilization."""
  x = jax.device_put(jnp.full((n, n), 1.0 / n, jnp.float32), device)
  run = jax.jit(lambda a: jax.lax.fori_loop(0, chain, lambda i, y: y @ a, a))
  run(x).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    run(x).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n ** 3 * chain / best


def _fmt_metrics(m: dict) -> str:
  return '  '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}'
                   for k, v in sorted(m.items()) if k != 'params_sha256')
