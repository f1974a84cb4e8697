"""The one training loop every model shares, and the other modes of launch.py.

The train step is a pure function (state, batch) -> (state, metrics). Data
order comes from (seed, step) and dropout keys from fold_in(key(seed), step),
so a run stopped anywhere and resumed ends with bit-identical parameters.
"""
import hashlib
import json
import os
import signal
import time
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from research import benchmark as bench, checkpoint, config as config_lib, distributed, layers
from research import metrics as metrics_lib, plots, tasks
from research.errors import NonFiniteError, UserError
from research.optim import make_optimizer
from research.parallel import Runtime, to_host

# Random bits depend on the logical shape only, not on how arrays are sharded,
# so dropout masks are the same on 1 device and on N.
jax.config.update('jax_threefry_partitionable', True)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step).


def train_step(state: TrainState, batch, *, loss_fn, tx, schedule, microbatches=1,
               axis_name=None):
  """One update. Gradients are of the loss summed over the global batch, divided by
  the global weight (token count), so neither sharding nor microbatches (a scan over
  k slices of the batch, keys fold_in(step key, i)) change what a step means."""
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:  # pmap: each device draws its own dropout masks.
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  def objective(params, batch, rng):
    loss_sum, weight, sums = loss_fn(params, batch, rng)
    return loss_sum, (weight, sums)

  grad_fn = jax.value_and_grad(objective, has_aux=True)
  if microbatches == 1:
    (loss_sum, (weight, sums)), grads = grad_fn(state.params, batch, rng)
  else:  # microbatch i holds rows i, i + k, ...: every device's block gives each its share.
    k = microbatches
    parts = jax.tree.map(lambda x: x.reshape((-1, k) + x.shape[1:]).swapaxes(0, 1), batch)

    def accumulate(total, i_part):
      i, part = i_part
      out = grad_fn(state.params, part, jax.random.fold_in(rng, i))
      return jax.tree.map(jnp.add, total, out), None

    first = jax.tree.map(lambda x: x[0], parts)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(grad_fn, state.params, first, rng))
    ((loss_sum, (weight, sums)), grads), _ = jax.lax.scan(
        accumulate, zeros, (jnp.arange(k), parts))
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
  """The fresh state; its leaves may carry logical axis names (boxed)."""
  params = task.init(jax.random.PRNGKey(seed))
  # Tasks with their own update rule may keep their own optimizer state (GloVe's AdaGrad).
  opt_state = task.init_opt_state(params) if hasattr(task, 'init_opt_state') else tx.init(params)
  return TrainState(step=jnp.array(0, jnp.int32), params=params, opt_state=opt_state,
                    rng=jax.random.fold_in(jax.random.PRNGKey(seed), 1))


def params_sha256(params) -> str:
  """A fingerprint of the parameters: names, shapes, dtypes and exact bytes."""
  h = hashlib.sha256()
  host = to_host(params)
  for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(host),
                           key=lambda kv: jax.tree_util.keystr(kv[0])):
    h.update(f'{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};'.encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


class Experiment:
  """The task, runtime, optimizer and (possibly restored) state of one workdir."""

  def __init__(self, config, workdir: str, devices=None):
    self.config, self.workdir = config, workdir
    self.runtime = Runtime.from_config(config.parallel, devices)
    self.runtime.check_batch_size(config.train.batch_size)
    self.compute_dtype = np.dtype(layers.resolve_dtype(config.model.get('dtype', 'float32'))).name
    self.task = tasks.build(config, self.runtime, workdir)
    self.microbatches = _check_microbatches(config, self.runtime, self.task)
    self.tx, self.schedule = make_optimizer(config.optimizer, config.train.steps)
    boxed = lambda: init_state(self.task, self.tx, self.config.seed)
    self.state_shardings = self.runtime.state_shardings(jax.eval_shape(boxed))
    self._fresh = jax.jit(lambda: nn.meta.unbox(boxed()), out_shardings=self.state_shardings)
    self.checkpointer = None

  def fresh_state(self) -> TrainState:
    return self._fresh()

  def compile_train_step(self):
    if hasattr(self.task, 'train_step'):  # a task with its own update rule (word2vec's sparse SGD).
      if self.runtime.mode == 'pmap':
        raise UserError(f'task {self.config.task!r} runs with parallel.mode=mesh or fsdp only')
      step = lambda state, batch, axis_name=None: self.task.train_step(state, batch, self.schedule)
    else:
      step = lambda state, batch, axis_name=None: train_step(
          state, batch, loss_fn=self.task.loss, tx=self.tx, schedule=self.schedule,
          microbatches=self.microbatches, axis_name=axis_name)
    return self.runtime.compile_train_step(step, self.state_shardings)

  @property
  def eval_splits(self):
    """The splits evaluated at the end; the first is also evaluated during training."""
    return getattr(self.task, 'eval_splits', ('validation', 'test'))

  def restore(self, required: bool = False):
    """(state, step): the latest checkpoint of the workdir, else a fresh state."""
    keep = max(self.config.checkpoint.keep, self.config.eval.get('average_last', 0))
    self.checkpointer = checkpoint.Checkpointer(os.path.join(self.workdir, 'checkpoints'), keep)
    state, step = self.checkpointer.restore_latest(self.abstract_state())
    if state is None:
      if required:
        raise UserError(f'no checkpoint found in {self.workdir}/checkpoints; train first')
      return self.fresh_state(), 0
    logging.info('restored checkpoint at step %d from %s', step, self.workdir)
    return state, step

  def abstract_state(self):
    """Shapes, dtypes and target shardings: orbax restores any layout into this one."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        jax.eval_shape(self._fresh), self.state_shardings)

  def evaluate(self, params, split: str, prefix: str = '') -> dict:
    prefix += f'{split}/' if split else ''
    return {prefix + k: v for k, v in self.task.evaluate(params, split).items()}

  def averaged(self, k: int):
    """The state of the latest checkpoint with the element-wise mean of the last k
    checkpoints' parameters (Vaswani et al. averaged the last 5 or 20), saved under
    the workdir's averaged/; None when k is 0."""
    if not k:
      return None
    steps = self.checkpointer.steps()
    if len(steps) < k:
      raise UserError(f'eval.average_last={k} needs {k} checkpoints, but '
                      f'{self.workdir}/checkpoints holds {len(steps)} (steps {steps}); use '
                      f'eval.average_last <= {len(steps)}, or train with it set to keep them')
    states = [self.checkpointer.restore(s, self.abstract_state()) for s in steps[-k:]]
    params = jax.tree.map(lambda *xs: sum(xs) / k, *[s.params for s in states])
    state = states[-1].replace(params=params)
    saver = checkpoint.Checkpointer(os.path.join(self.workdir, 'averaged'), 1)
    if steps[-1] in saver.steps():  # an earlier average of the same run: made anew.
      saver.manager.delete(steps[-1])
    saver.save(steps[-1], state, wait=True)
    saver.close()
    logging.info('averaged the parameters of checkpoints %s into %s/averaged', steps[-k:],
                 self.workdir)
    return state


def _check_microbatches(config, runtime, task) -> int:
  k = config.train.get('microbatches', 1)
  per_device = config.train.batch_size // runtime.data_size
  if k < 1 or (per_device and per_device % k):
    raise UserError(f'train.microbatches={k} must be >= 1 and divide the per-device batch '
                    f'of {per_device} (train.batch_size={config.train.batch_size} over '
                    f'{runtime.data_size} devices)')
  if k > 1 and hasattr(task, 'train_step'):
    raise UserError(f'train.microbatches={k}: task {config.task!r} has its own update rule; '
                    'use 1')
  return k


def _profile_range(spec: str, total: int):
  """'100:105' -> (100, 105): trace the steps from 100 up to 105; '' -> None."""
  if not spec:
    return None
  start, _, stop = spec.partition(':')
  if not (start.isdigit() and stop.isdigit() and int(start) < int(stop) <= total):
    raise UserError(f'train.profile_steps={spec!r}: expected START:STOP with 0 <= START < STOP '
                    f'<= train.steps={total}, e.g. 10:15')
  return int(start), int(stop)


def _is_main() -> bool:
  return jax.process_index() == 0


def _write_json(path: str, obj):
  if _is_main():
    with open(path + '.tmp', 'w') as f:
      json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(path + '.tmp', path)


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


class _Throughput:
  """Units (tokens, examples, ...) and matmul FLOPs of the steps since the last log
  line, as rates and MFU against the device's peak for the compute dtype."""

  def __init__(self, exp, step_fn):
    self.exp, self.flops, self.peak = exp, bench.StepFlops(step_fn), False
    self.reset()

  def reset(self):
    self.units, self.total_flops = {}, 0.0

  def add(self, host_batch, state, batch):
    for k, v in self.exp.task.units(host_batch).items():
      self.units[k] = self.units.get(k, 0) + v
    flops = self.flops(state, batch)
    self.total_flops = None if flops is None or self.total_flops is None else (
        self.total_flops + flops)

  def rates(self, seconds: float) -> dict:
    out = {f'train/{bench.per_second(k)}': v / seconds for k, v in self.units.items()}
    if self.peak is False:  # measured once, at the first log line (a CPU's matmul rate).
      self.peak = bench.peak_flops(self.exp.runtime.mesh.local_devices[0],
                                       self.exp.compute_dtype,
                                       self.exp.config.bench.get('matmul_size', 0), repeats=2,
                                       chain=4)
    if self.peak and self.total_flops:
      out['train/mfu'] = self.total_flops / self.exp.runtime.num_devices / seconds / self.peak[0]
    return out


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
  runtime, task, cfg, total = exp.runtime, exp.task, config, config.train.steps
  profile = _profile_range(cfg.train.get('profile_steps', ''), total)
  state, start_step = exp.restore()
  results_path = os.path.join(workdir, 'results.json')
  if start_step >= total and os.path.exists(results_path):
    exp.checkpointer.close()
    logging.info('this run already finished at step %d; results in %s', start_step, results_path)
    with open(results_path) as f:
      return json.load(f)
  exp.checkpointer.set_aside_unreadable()
  _write_json(os.path.join(workdir, 'config.json'), config_lib.to_dict(config))
  writer = metrics_lib.MetricWriter(workdir, start_step)
  step_fn = exp.compile_train_step()
  logging.info('training %s on %d %s device(s) (%s, mesh %s, %s), steps %d -> %d, workdir %s',
               cfg.name, runtime.num_devices, jax.devices()[0].platform, runtime.mode,
               dict(runtime.mesh.shape), exp.compute_dtype, start_step, total, workdir)
  state = runtime.put_state(state, exp.state_shardings)
  last_saved, throughput = start_step, _Throughput(exp, step_fn)
  window, window_start, t_window, eval_seconds = [], start_step, time.time(), 0.0
  last_eval = (-1, {})  # (step, metrics) of the latest periodic evaluation.
  # train_batch is a pure function of the step, so the next batch is built while the
  # device runs this one.
  host = task.train_batch(start_step) if start_step < total else None
  batch = runtime.put_batch(host) if host is not None else None
  with _StopRequest() as stop:
    for step in range(start_step, total):
      if profile and step == profile[0]:
        jax.profiler.start_trace(os.path.join(workdir, 'tensorboard'), create_perfetto_trace=True)
      state, metrics = step_fn(state, batch)
      throughput.add(host, state, batch)
      if step + 1 < total:
        host = task.train_batch(step + 1)
        batch = runtime.put_batch(host)
      metrics = jax.device_get(metrics)
      done = step + 1
      if profile and done == profile[1]:
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        logging.info('profiled steps %d-%d into %s/tensorboard', profile[0], done - 1, workdir)
      if done == total:  # start, data, compile and training, before the final evaluation.
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
        elapsed = max(time.time() - t_window - eval_seconds, 1e-9)
        rate = (done - window_start) / elapsed
        mean = {f'train/{k}': float(np.mean([m[k] for m in window])) for k in window[0]}
        mean['train/steps_per_second'] = rate
        mean.update(throughput.rates(elapsed))
        writer.write(done, mean)
        logging.info('step %d/%d  loss %.4f  %.1f steps/s%s  ETA %s', done, total,
                     mean['train/loss'], rate, _fmt_rates(mean),
                     _fmt_time((total - done) / max(rate, 1e-9)))
        window, window_start, t_window, eval_seconds = [], done, time.time(), 0.0
        throughput.reset()

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

  exp.checkpointer.wait()
  state = runtime.global_state(state)
  results = {'step': int(state.step)}
  for split in exp.eval_splits:
    if split == exp.eval_splits[0] and last_eval[0] == results['step']:
      results.update(last_eval[1])
    else:
      results.update(exp.evaluate(state.params, split))
  averaged = exp.averaged(cfg.eval.get('average_last', 0))
  exp.checkpointer.close()
  if averaged is not None:
    for split in exp.eval_splits:
      results.update(exp.evaluate(averaged.params, split, prefix='averaged/'))
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
  """The latest checkpoint's metrics, and with eval.average_last=K those of the mean
  of the last K checkpoints (averaged/*)."""
  exp = Experiment(config, workdir, devices)
  state, step = exp.restore(required=True)
  results = {'step': step}
  for split in exp.eval_splits:
    results.update(exp.evaluate(state.params, split))
  averaged = exp.averaged(config.eval.get('average_last', 0))
  exp.checkpointer.close()
  if averaged is not None:
    for split in exp.eval_splits:
      results.update(exp.evaluate(averaged.params, split, prefix='averaged/'))
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
  """--mode=benchmark's JSON row: train steps timed after warm-up (compilation
  excluded), or with bench.what=decode, translating the test split."""
  what = config.bench.get('what', 'train')
  if what not in ('train', 'decode'):
    raise UserError(f'unknown bench.what {what!r}; use train or decode')
  exp = Experiment(config, workdir if what == 'decode' else '', devices)
  if what == 'decode':
    if workdir and os.path.isdir(os.path.join(workdir, 'checkpoints')):
      state, step = exp.restore(required=True)
      exp.checkpointer.close()
    else:
      state, step = exp.fresh_state(), 0
    return bench.decode_row(exp, state, step)
  state = exp.runtime.put_state(exp.fresh_state(), exp.state_shardings)
  return bench.train_row(exp, state, exp.compile_train_step())


def _fmt_rates(mean: dict) -> str:
  tokens = mean.get('train/tokens_per_second', mean.get('train/examples_per_second'))
  unit = 'tokens' if 'train/tokens_per_second' in mean else 'examples'
  out = f'  {tokens:,.0f} {unit}/s' if tokens is not None else ''
  return out + (f'  MFU {mean["train/mfu"]:.3f}' if 'train/mfu' in mean else '')


def _fmt_time(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _fmt_metrics(m: dict) -> str:
  return '  '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}'
                   for k, v in sorted(m.items()) if k != 'params_sha256')
