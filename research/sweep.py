"""Sweeps: one run per point of a config's grid, and their table.

Sweeps: a config's get_sweep() returns a list of override dicts; each point
runs as its own `launch.py` process in workdir/<point-name>/.

    from research import sweep
    def get_sweep():
      return sweep.product(sweep.axis('model.decoder_dim', [64, 128]),
                           sweep.axis('seed', [0, 1]))

A finished point (its results.json exists) is skipped; an interrupted one
resumes from its checkpoint, since its command is the same; a failed one is
recorded with its error while the others go on.
"""
import builtins
import csv
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time

from research.errors import UserError

# --- building sweeps ------------------------------------------------------------------


def axis(key: str, values) -> list[dict]:
  """One swept key: [{key: v} for v in values]."""
  return [{key: v} for v in values]


def product(*sweeps) -> list[dict]:
  """Every combination of the given sweeps (later keys vary fastest)."""
  return [_merge(points) for points in itertools.product(*sweeps)]


def zip(*sweeps) -> list[dict]:  # pylint: disable=redefined-builtin
  """Point i of each sweep together; the sweeps must have the same length."""
  if len({len(s) for s in sweeps}) > 1:
    raise ValueError(f'sweep.zip needs sweeps of one length, got {[len(s) for s in sweeps]}')
  return [_merge(points) for points in builtins.zip(*sweeps)]


def chain(*sweeps) -> list[dict]:
  """The points of each sweep, one after another."""
  return [dict(p) for s in sweeps for p in s]


def _merge(points) -> dict:
  out = {}
  for p in points:
    clash = set(out) & set(p)
    if clash:
      raise ValueError(f'sweep points set the same key twice: {sorted(clash)}')
    out.update(p)
  return out


def point_name(overrides: dict) -> str:
  """A directory name that reads as the overrides: 'model.decoder_dim=64,seed=1'."""
  if not overrides:
    return 'base'
  text = ','.join(f'{k}={v}' for k, v in overrides.items())
  return re.sub(r'[^A-Za-z0-9._=,+-]', '_', text)


def command(launch_path: str, config_spec: str, workdir: str, overrides: dict,
            extra_args=()) -> list[str]:
  """The launch.py command line of one point; its own overrides come last and win."""
  return [sys.executable, launch_path, f'--config={config_spec}', f'--workdir={workdir}',
          *extra_args, *[f'--config.{k}={v}' for k, v in overrides.items()]]


def commands(launch_path, config_spec, workdir, points, extra_args=()) -> list[list[str]]:
  return [command(launch_path, config_spec, os.path.join(workdir, point_name(p)), p, extra_args)
          for p in points]


# --- running -------------------------------------------------------------------------


def point_index(value: str, count: int, environ=None) -> int:
  """--sweep_point's point: N itself, or with 'auto', a SLURM array task's
  SLURM_ARRAY_TASK_ID (sbatch --array=0-<count - 1>)."""
  environ = os.environ if environ is None else environ
  if value == 'auto':
    value = environ.get('SLURM_ARRAY_TASK_ID', '')
    if not value:
      raise UserError('--sweep_point=auto reads SLURM_ARRAY_TASK_ID, which is not set: run it '
                      f'in a SLURM array task (sbatch --array=0-{count - 1}), or give N')
  try:
    index = int(value)
  except ValueError:
    raise UserError(f'--sweep_point={value!r}: give a point number 0..{count - 1}, or auto') from None
  if not 0 <= index < count:
    raise UserError(f'--sweep_point={index}: the sweep has {count} points, 0..{count - 1}')
  return index


def run_point(launch_path: str, config_spec: str, workdir: str, points: list[dict], index: int,
              extra_args=(), log=print) -> int:
  """Runs point `index` alone, as --sweep runs each point (its own process, logged in
  workdir/<point>/log.txt, error.txt if it fails); returns its exit code. A finished
  point is left as it is. --sweep_collect writes the table once all have run."""
  _check_names(points)
  name = point_name(points[index])
  pdir = os.path.join(workdir, name)
  if os.path.exists(os.path.join(pdir, 'results.json')):
    log(f'sweep: point {index} ({name}) already finished')
    return 0
  os.makedirs(pdir, exist_ok=True)
  cmd = command(launch_path, config_spec, pdir, points[index], extra_args)
  with open(os.path.join(pdir, 'log.txt'), 'a') as logfile:
    logfile.write(f'$ {shlex.join(cmd)}\n')
    logfile.flush()
    code = subprocess.run(cmd, stdout=logfile, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL).returncode
  error = _outcome(pdir, code)
  if not error:
    log(f'sweep: point {index} ({name}) done')
    return 0
  log(f'sweep: point {index} ({name}) failed: {error}')
  return code or 1


def _outcome(pdir: str, code: int) -> str:
  """'' for a point that finished (an earlier error.txt goes), else its error, also
  written to pdir/error.txt."""
  error_path = os.path.join(pdir, 'error.txt')
  if code == 0 and os.path.exists(os.path.join(pdir, 'results.json')):
    if os.path.exists(error_path):
      os.remove(error_path)  # an earlier failure, now run through.
    return ''
  error = _last_error(os.path.join(pdir, 'log.txt'), code)
  with open(error_path, 'w') as f:
    f.write(error + '\n')
  return error


def collect(workdir: str, points: list[dict], log=print) -> list[dict]:
  """sweep.csv, sweep.md and sweep.png from the points' workdirs, wherever they ran:
  done (results.json), failed (error.txt) or not run."""
  _check_names(points)
  rows = []
  for overrides in points:
    name = point_name(overrides)
    pdir = os.path.join(workdir, name)
    row = {'point': name, 'overrides': overrides, 'status': 'not run'}
    if os.path.exists(os.path.join(pdir, 'results.json')):
      row['status'] = 'done'
    elif os.path.exists(os.path.join(pdir, 'error.txt')):
      row['status'] = 'failed'
      with open(os.path.join(pdir, 'error.txt'), errors='replace') as f:
        row['error'] = f.read().strip()
    rows.append(row)
  table = summarize(workdir, rows)
  counts = {s: sum(r['status'] == s for r in rows) for s in ('done', 'failed', 'not run')}
  log(f'sweep: {counts["done"]} done, {counts["failed"]} failed, {counts["not run"]} not run; '
      f'wrote {os.path.join(workdir, "sweep.csv")}, sweep.md and sweep.png')
  return table


def _check_names(points):
  if not points:
    raise UserError('the sweep has no points')
  names = [point_name(p) for p in points]
  if len(set(names)) != len(names):
    raise UserError('two sweep points have the same overrides')


def run(launch_path: str, config_spec: str, workdir: str, points: list[dict], parallel: int = 1,
        extra_args=(), log=print) -> list[dict]:
  """Runs every point (`parallel` at a time) and writes the summary files."""
  _check_names(points)
  names = [point_name(p) for p in points]
  os.makedirs(workdir, exist_ok=True)
  rows = {n: {'point': n, 'overrides': p, 'status': 'pending'} for n, p in builtins.zip(names, points)}
  todo = []
  for name, overrides in builtins.zip(names, points):
    if os.path.exists(os.path.join(workdir, name, 'results.json')):
      rows[name]['status'] = 'done'
    else:
      todo.append((name, overrides))
  skipped = len(points) - len(todo)
  if skipped:
    log(f'sweep: {skipped} finished point(s) skipped')

  running, durations, t0 = {}, [], time.time()
  while todo or running:
    while todo and len(running) < max(1, parallel):
      name, overrides = todo.pop(0)
      pdir = os.path.join(workdir, name)
      os.makedirs(pdir, exist_ok=True)
      logfile = open(os.path.join(pdir, 'log.txt'), 'a')
      cmd = command(launch_path, config_spec, pdir, overrides, extra_args)
      logfile.write(f'$ {shlex.join(cmd)}\n')
      logfile.flush()
      proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
      running[name] = (proc, logfile, time.time())
    time.sleep(0.2)
    for name, (proc, logfile, started) in list(running.items()):
      if proc.poll() is None:
        continue
      logfile.close()
      del running[name]
      durations.append(time.time() - started)
      error = _outcome(os.path.join(workdir, name), proc.returncode)
      rows[name]['status'] = 'failed' if error else 'done'
      if error:
        rows[name]['error'] = error
      log(_progress(rows, durations, len(running), parallel, t0, name))

  table = summarize(workdir, [rows[n] for n in names])
  log(f'sweep: wrote {os.path.join(workdir, "sweep.csv")}, sweep.md and sweep.png')
  return table


def _progress(rows, durations, n_running, parallel, t0, last) -> str:
  done = sum(r['status'] == 'done' for r in rows.values())
  failed = sum(r['status'] == 'failed' for r in rows.values())
  remaining = len(rows) - done - failed
  mean = sum(durations) / len(durations)
  eta = mean * remaining / max(1, parallel)
  return (f'sweep: {done} done, {failed} failed, {remaining} remaining '
          f'({n_running} running), last {last} {rows[last]["status"]}, '
          f'elapsed {_fmt(time.time() - t0)}, ETA {_fmt(eta)}')


def _fmt(seconds: float) -> str:
  s = int(seconds)
  return f'{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}'


def _last_error(log_path: str, returncode: int) -> str:
  lines = [l.strip() for l in open(log_path, errors='replace') if l.strip()]
  errors = [l for l in lines if l.startswith('error:')]
  text = errors[-1] if errors else (lines[-1] if lines else '')
  return f'exit {returncode}: {text}'[:500]


# --- summary -------------------------------------------------------------------------


def summarize(workdir: str, rows: list[dict]) -> list[dict]:
  """sweep.csv, sweep.md and sweep.png: one row per point."""
  keys = list(dict.fromkeys(k for r in rows for k in r['overrides']))
  table = []
  for r in rows:
    results = {}
    path = os.path.join(workdir, r['point'], 'results.json')
    if r['status'] == 'done' and os.path.exists(path):
      results = json.load(open(path))
    table.append({
        'point': r['point'], 'status': r['status'],
        **{k: r['overrides'].get(k, '') for k in keys},
        **{k: v for k, v in results.items()
           if isinstance(v, (int, float)) and k not in ('step', 'wall_seconds')},
        'wall_seconds': round(results['wall_seconds'], 1) if 'wall_seconds' in results else '',
        'params_sha256': results.get('params_sha256', ''),
        'error': r.get('error', ''),
    })
  columns = list(dict.fromkeys(c for row in table for c in row))
  # Keep the identifying columns first and the long ones last.
  tail = ['wall_seconds', 'params_sha256', 'error']
  columns = [c for c in columns if c not in tail] + tail
  with open(os.path.join(workdir, 'sweep.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(table)
  with open(os.path.join(workdir, 'sweep.md'), 'w') as f:
    f.write('| ' + ' | '.join(columns) + ' |\n')
    f.write('|' + '---|' * len(columns) + '\n')
    for row in table:
      f.write('| ' + ' | '.join(_cell(row.get(c, '')) for c in columns) + ' |\n')
  metrics = [c for c in columns if '/' in c and any(isinstance(r.get(c), (int, float))
                                                     for r in table)]
  _plot(os.path.join(workdir, 'sweep.png'), table, keys, metrics)
  return table


def _cell(value) -> str:
  if isinstance(value, float):
    return f'{value:.4g}'
  if isinstance(value, str) and len(value) == 64 and re.fullmatch('[0-9a-f]+', value):
    return value[:12]
  return str(value).replace('|', '\\|')


def _plot(path, table, keys, metrics):
  """One panel per (metric, swept key): the metric against the key's values."""
  from research import plots  # pylint: disable=g-import-not-at-top
  plt = plots.plt
  if not keys or not metrics:
    return
  fig, axes = plt.subplots(len(metrics), len(keys), squeeze=False,
                           figsize=(3.4 * len(keys), 2.6 * len(metrics)))
  for i, metric in enumerate(metrics):
    for j, key in enumerate(keys):
      ax = axes[i][j]
      pts = [(r[key], r[metric]) for r in table
             if r.get(key, '') != '' and isinstance(r.get(metric), (int, float))
             and math.isfinite(r[metric])]
      numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in pts)
      if numeric:
        ax.scatter([x for x, _ in pts], [y for _, y in pts])
      else:
        labels = list(dict.fromkeys(str(x) for x, _ in pts))
        ax.scatter([labels.index(str(x)) for x, _ in pts], [y for _, y in pts])
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
      ax.set_xlabel(key, fontsize=8)
      ax.set_ylabel(metric, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
