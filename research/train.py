"""The one training loop every model shares, and the other modes of launch.py.

Every mode builds an Experiment (research/experiment.py) and does its work in
the task's scope. The loop trains with periodic evaluation and checkpoints,
then evaluates every split and writes results, plots and artifacts.
"""
import json
import os
import shutil
import time

import jax
import numpy as np
from absl import logging

from research import benchmark as bench, config as config_lib, distributed
from research import metric_log, plots, tasks, workdir as workdir_lib
from research.data import pipeline
from research.errors import NonFiniteError, UserError
from research.experiment import Experiment, TrainState, params_sha256, profile_range  # noqa: F401


def _is_main() -> bool:
  return jax.process_index() == 0


def _write_json(path: str, obj):
  if _is_main():
    with open(path + '.tmp', 'w') as f:
      json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(path + '.tmp', path)


def train_and_evaluate(config, workdir: str, devices=None, resume_command: str = '',
                       process_start: float | None = None) -> dict:
  """Trains with periodic eval and checkpoints, then tests; returns results.
  process_start (time.time() at the process's start) times the whole process in
  results' time/start_to_trained_seconds; without it, this call is timed."""
  t_start = time.time()
  task_class = tasks.validate(config)
  workdir_lib.prepare(workdir)
  distributed.check_shared_workdir(workdir)
  with workdir_lib.Lock(workdir):
    for stage_config, stage_workdir in task_class.stages(config, workdir):
      logging.info('stage: training %s in %s first', stage_config.get('name') or
                   stage_config.task, stage_workdir)
      train_and_evaluate(stage_config, stage_workdir, devices)
    exp = Experiment(config, workdir, devices)
    try:
      with exp.task.scope():
        return _train(exp, t_start, process_start or t_start, resume_command)
    finally:  # on any error too: no writer thread outlives the run.
      if exp.checkpointer is not None:
        exp.checkpointer.close(quiet=True)


def _train(exp, t_start, process_start, resume_command):
  cfg, workdir = exp.config, exp.workdir
  profile_range(cfg.train.profile_steps, exp.total_steps)  # checked before any work.
  state, start_step = exp.restore()
  results_path = os.path.join(workdir, 'results.json')
  if start_step >= exp.total_steps and os.path.exists(results_path):
    logging.info('this run already finished at step %d; results in %s', start_step, results_path)
    with open(results_path) as f:
      return json.load(f)
  exp.checkpointer.set_aside_unreadable()
  workdir_lib.record_config(workdir, config_lib.to_dict(cfg), start_step)
  _write_json(os.path.join(workdir, 'config.json'), config_lib.to_dict(cfg))
  writer = metric_log.MetricWriter(workdir, start_step)
  try:
    return _loop(exp, writer, state, start_step, t_start, process_start, resume_command)
  finally:
    writer.close()


def _loop(exp, writer, state, start_step, t_start, process_start, resume_command):
  """The steps are dispatched without waiting for them: batches come from a
  background thread (pipeline.Prefetch), and the metrics stay on the devices until
  a log line, an evaluation or a checkpoint fetches them (as MaxText and
  big_vision do). The fetch checks them: a non-finite loss stops the run naming
  its step, at most train.log_every - 1 steps after it, before any save."""
  runtime, task, cfg, total, workdir = exp.runtime, exp.task, exp.config, exp.total_steps, exp.workdir
  profile = profile_range(cfg.train.profile_steps, total)
  results_path = os.path.join(workdir, 'results.json')
  step_fn = exp.compile_train_step()
  logging.info('training %s on %d %s device(s) (%s, mesh %s, %s), steps %d -> %d, workdir %s',
               cfg.name, runtime.num_devices, jax.devices()[0].platform, runtime.mode,
               dict(runtime.mesh.shape), exp.compute_dtype, start_step, total, workdir)
  state = runtime.put_state(state, exp.state_shardings)
  last_saved, throughput = start_step, bench.Throughput(exp, step_fn)
  window, pending = [], []  # fetched metrics since the last log line; not yet fetched.
  window_start, t_window, eval_seconds = start_step, time.time(), 0.0
  last_eval = (-1, {})  # (step, metrics) of the latest periodic evaluation.
  # Stopping needs every process's word (a collective): on many hosts it is asked
  # only where the loop waits anyway.
  every_step = jax.process_count() == 1
  with distributed.StopRequest() as stop, pipeline.Prefetch(
      task.train_batch, runtime.put_batch, start_step, total, scope=task.scope) as batches:
    first_step_at = time.time()  # data loaded and the state placed: what comes is compute.
    for step in range(start_step, total):
      if profile and step == profile[0]:
        jax.profiler.start_trace(os.path.join(workdir, 'tensorboard'), create_perfetto_trace=True)
      host, batch = batches.get(step)
      state, metrics = step_fn(state, batch)
      throughput.add(host, state, batch)
      done = step + 1
      pending.append((done, metrics))
      if profile and done == profile[1]:
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        logging.info('profiled steps %d-%d into %s/tensorboard', profile[0], done - 1, workdir)
      log = done % cfg.train.log_every == 0 or done == total
      evaluate = done % cfg.eval.every == 0 or done == total
      save = done % cfg.checkpoint.every == 0 or done == total
      stopping = stop.requested() if every_step or log or evaluate or save else None
      if log or evaluate or save or stopping:
        window += _fetch(pending, last_saved)
        pending = []
      if done == total:  # start, data, compile and training, before the final evaluation.
        trained_seconds = time.time() - process_start

      if log:
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

      if evaluate:
        t_eval = time.time()
        params = runtime.global_state(state).params
        ev = exp.evaluate(params, exp.eval_splits[0])
        last_eval = (done, dict(ev))  # the final results reuse it rather than decode again.
        ev['time/elapsed_seconds'] = time.time() - t_start  # this process, compile included.
        writer.write(done, ev)
        logging.info('step %d eval: %s', done, _fmt_metrics(ev))
        shown = task.samples(runtime.whole(params), exp.eval_splits[0],
                             cfg.eval.num_samples) if cfg.eval.num_samples else []
        for src, hyp, ref in shown:
          if _is_main():
            logging.info('  %-32r -> %-14r %s', src, hyp, '✓' if hyp == ref else f'(want {ref!r})')
        eval_seconds += time.time() - t_eval  # keep eval time out of steps/s.

      if save or stopping:
        exp.checkpointer.save(done, runtime.global_state(state), wait=bool(stopping))
        last_saved = done
      if stopping and done < total:
        exp.checkpointer.close()
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
  results.update(_averaged_results(exp))
  writer.write(int(state.step), {k: v for k, v in results.items() if k != 'step'})
  writer.close()
  if changes := workdir_lib.config_changes(workdir):
    results['config_changes'] = changes
  results['params_sha256'] = params_sha256(state.params)
  results['num_params'] = int(sum(np.size(x) for x in jax.tree.leaves(state.params)))
  whole = runtime.whole(state.params)  # what runs outside the step reads whole leaves.
  results.update(task.final_results(whole))  # e.g. regression's coefficients.
  results['wall_seconds'] = time.time() - t_start
  if start_step < total:
    results['time/start_to_trained_seconds'] = trained_seconds
    results['time/start_to_first_step_seconds'] = first_step_at - process_start
  _write_json(results_path, results)
  task.write_artifacts(whole, workdir)  # collective: decodes on every process.
  if _is_main():
    plots.metric_curves(metric_log.read(writer.path), os.path.join(workdir, 'plots', 'metrics.png'))
  logging.info('final: %s', _fmt_metrics(results))
  return results


def _fetch(pending, last_saved: int) -> list[dict]:
  """The host values of the pending steps' metrics, each checked: a non-finite loss
  or gradient stops the run, naming the first such step, before anything is saved."""
  values = jax.device_get([m for _, m in pending])
  for (done, _), m in zip(pending, values):
    if not (np.isfinite(m['loss']) and np.isfinite(m['grad_norm'])):
      raise NonFiniteError(
          f'non-finite {"loss" if not np.isfinite(m["loss"]) else "gradient"} '
          f'at step {done} (loss={m["loss"]}, grad_norm={m["grad_norm"]}); stopped at step '
          f'{pending[-1][0]}, the last good checkpoint (step {last_saved}) is kept')
  return values


def _averaged_results(exp) -> dict:
  """averaged/* metrics of the mean of the last eval.average_last checkpoints ({} when
  it is 0); the checkpointer is closed after reading them."""
  averaged = exp.averaged(exp.config.eval.average_last)
  exp.checkpointer.close()
  if averaged is None:
    return {}
  out = {}
  for split in exp.eval_splits:
    out.update(exp.evaluate(averaged.params, split, prefix='averaged/'))
  return out


def evaluate(config, workdir: str, devices=None) -> dict:
  """The latest checkpoint's metrics, and with eval.average_last=K those of the mean
  of the last K checkpoints (averaged/*)."""
  tasks.validate(config)
  _require_run(workdir)
  with workdir_lib.Lock(workdir):
    exp = Experiment(config, workdir, devices)
    try:
      with exp.task.scope():
        state, step = exp.restore(required=True)
        results = {'step': step}
        for split in exp.eval_splits:
          results.update(exp.evaluate(state.params, split))
        results.update(_averaged_results(exp))
    finally:
      if exp.checkpointer is not None:
        exp.checkpointer.close(quiet=True)
  # Beside results.json, never over it: this config's eval settings may differ from training's.
  _write_json(os.path.join(workdir, 'eval_results.json'), results)
  print(json.dumps(results, sort_keys=True), flush=True)
  return results


def predictor(config, workdir: str, devices=None):
  """answer(lines) -> one answer per line (write_answers prints them), from the
  latest checkpoint of a trained workdir: restored once, asked any number of times."""
  tasks.validate(config)
  _require_run(workdir)
  exp = Experiment(config, workdir, devices)
  with exp.task.scope():
    state, _ = exp.restore(required=True)
    exp.checkpointer.close()
    params = exp.runtime.whole(state.params)

  def answer(lines: list[str]) -> list[str]:
    if not lines:  # no question: no task need handle an empty batch.
      return []
    with exp.task.scope():
      answers = exp.task.predict(params, lines)
    if len(answers) != len(lines):
      raise AssertionError(f'task {exp.task.name!r} answered {len(answers)} of '
                           f'{len(lines)} lines')
    return answers
  return answer


def predict(config, workdir: str, lines: list[str], devices=None) -> list[str]:
  return predictor(config, workdir, devices)(lines)


def input_lines(text: str) -> list[str]:
  """predict's questions: the text split at line feeds only (a carriage return before
  one dropped), so a line of a file is one question whatever else it holds; a last
  line without a line feed counts."""
  lines = text.split('\n')
  if lines[-1] == '':
    lines.pop()
  return [line[:-1] if line.endswith('\r') else line for line in lines]


def write_answers(answers: list[str], out, err) -> int:
  """Writes each answer as one line of `out`; a Rejected one leaves an empty line
  there and `error: line N: why` on `err`. Returns the number rejected."""
  rejected = 0
  for number, answer in enumerate(answers, 1):
    if isinstance(answer, tasks.Rejected):
      rejected += 1
      print(f'error: line {number}: {one_line(answer)}', file=err, flush=True)
      answer = ''
    print(one_line(answer), file=out, flush=True)
  return rejected


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029], ' ')


def one_line(answer: str) -> str:
  """An answer as one output line: line breaks and other control characters (a
  decoded byte piece can be any byte) become spaces, so answers stay beside their
  questions."""
  return answer.translate(_CONTROLS)


def prepare(config) -> dict:
  """--mode=prepare: the prepared stores the config reads, made where none is yet;
  training makes them on its own too, so this only moves the work earlier."""
  started = time.time()
  stores = tasks.validate(config).prepare(config)
  return {'config': config.name, 'stores': stores, 'seconds': round(time.time() - started, 2)}


# What an export writes, removed first by --export_overwrite (other files stay).
EXPORT_FILES = ('config.json', 'model.safetensors', 'model.safetensors.index.json',
                'generation_config.json', 'tokenizer.json', 'tokenizer_config.json',
                'special_tokens_map.json', 'vocab.json', 'merges.txt', 'source.spm',
                'target.spm', 'seqlab_tokenizer')


def export(config, workdir: str, export_dir: str, devices=None, overwrite: bool = False) -> list:
  """--mode=export: the latest checkpoint as a Hugging Face checkpoint in export_dir (a
  run of train.steps=0: its initial parameters); returns the paths written. A folder
  that holds files is written into only with `overwrite`."""
  task_class = tasks.validate(config)
  if not export_dir:
    raise UserError('--mode=export writes into --export_dir; give one')
  why = task_class.cannot_export(config)  # refused before any data or checkpoint is read.
  if why:
    raise UserError(why)
  if os.path.isfile(export_dir):
    raise UserError(f'--export_dir {export_dir} is a file; give a folder')
  inside = os.path.relpath(os.path.abspath(export_dir), os.path.abspath(workdir))
  if not inside.startswith('..'):
    raise UserError(f'--export_dir {export_dir} is inside the run\'s --workdir {workdir}; give '
                    'a folder outside it')
  held = sorted(os.listdir(export_dir)) if os.path.isdir(export_dir) else []
  if held and not overwrite:
    raise UserError(f'--export_dir {export_dir} holds {len(held)} file(s) ({", ".join(held[:3])}'
                    f'{", ..." if len(held) > 3 else ""}); give a new or empty folder, or '
                    'add --export_overwrite to replace an earlier export there')
  if config.train.steps:  # before any data is read.
    _require_run(workdir)
  exp = Experiment(config, workdir, devices)
  with exp.task.scope():
    state, step = exp.restore(required=bool(config.train.steps))
    exp.checkpointer.close()
    params = jax.device_get(exp.runtime.whole(state.params))  # every process: a collective.
    paths = []
    if jax.process_index() == 0:
      for name in EXPORT_FILES:  # an earlier export's files, which the new one may not write.
        stale = os.path.join(export_dir, name)
        if os.path.isdir(stale):
          shutil.rmtree(stale)
        elif os.path.exists(stale):
          os.remove(stale)
      paths = exp.task.export(params, export_dir)
  logging.info('exported step %d of %s to %s', step, workdir, export_dir)
  return paths


def _require_run(workdir: str):
  """eval and predict read a trained workdir; they never make one."""
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    what = 'is a file' if os.path.isfile(workdir) else 'holds no checkpoints'
    raise UserError(f'--workdir {workdir} {what}; train first, or give the workdir of a '
                    'trained run')


def benchmark(config, workdir: str = '', devices=None, process_start: float | None = None) -> dict:
  """--mode=benchmark's JSON row: train steps timed after warm-up (compilation
  excluded, and timed apart), or with bench.what=decode, translating the test split.
  bench.profile_steps=N traces N more steps into workdir/tensorboard."""
  task_class = tasks.validate(config)
  what = config.bench.what
  if what not in ('train', 'decode'):
    raise UserError(f'unknown bench.what {what!r}; use train or decode')
  if what == 'decode' and not task_class.decodes:
    raise UserError(f'bench.what=decode times decoding, which task {config.task!r} does not '
                    'do; use bench.what=train, or a translation config')
  exp = Experiment(config, workdir if what == 'decode' else '', devices)
  with exp.task.scope():
    if what == 'decode':
      if config.bench.profile_steps:
        logging.warning('bench.profile_steps traces train steps; bench.what=decode ignores it')
      state, step = exp.fresh_state(), 0
      if workdir and os.path.isdir(os.path.join(workdir, 'checkpoints')):
        state, step = exp.restore(required=True)
        exp.checkpointer.close()
      return bench.decode_row(exp, state, step)
    t0 = time.perf_counter()
    state = exp.runtime.put_state(exp.fresh_state(), exp.state_shardings)
    jax.block_until_ready(state)
    init_seconds = time.perf_counter() - t0
    logging.info('initialized the state in %.1f s (compilation included)', init_seconds)
    profile_dir = os.path.join(workdir, 'tensorboard') if workdir else ''
    if config.bench.profile_steps and not workdir:
      logging.warning('bench.profile_steps=%d: no --workdir to write the trace into; not traced',
                      config.bench.profile_steps)
    row = bench.train_row(exp, state, exp.compile_train_step(), profile_dir, process_start)
    return {**row, 'init_seconds': round(init_seconds, 2)}


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
