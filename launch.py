"""Trains, evaluates, benchmarks or queries one experiment.

  python launch.py --config=configs/NAME.py[:preset] [--workdir=DIR] [--config.key=value ...]
                   [--mode=train|eval|predict|benchmark|prepare]
"""
import os
import re
import sys
import time

# Before the heavy imports: results' time/start_to_trained_seconds (kept across the re-run below).
STARTED = float(os.environ.pop('SEQLAB_STARTED', time.time()))


def huge_pages_environ(environ, platform: str = sys.platform):
  """The environment to run launch.py again in, with glibc's malloc backing its large
  blocks by transparent huge pages; None to go on as is. XLA's CPU runtime
  allocates each step's temporaries (tens of MB) afresh, and every 4 KB page of them
  costs a page fault; huge pages also spare the TLB misses of random rows in the
  embedding tables (docs/benchmarks.md has the gain). glibc < 2.35 and other C
  libraries ignore the setting; SEQLAB_HUGE_PAGES=0 skips it."""
  tunables = environ.get('GLIBC_TUNABLES', '')
  if (not platform.startswith('linux') or environ.get('SEQLAB_HUGE_PAGES', '1') == '0'
      or 'glibc.malloc.hugetlb' in tunables):
    return None
  return {**environ, 'GLIBC_TUNABLES': ':'.join(filter(None, [tunables, 'glibc.malloc.hugetlb=1']))}


def cpu_pool_threads(environ, cores: int | None = None) -> str | None:
  """PJRT_NPROC for a run that forces N > 1 CPU devices; None to leave XLA's default.
  Forced devices share one XLA pool of max(cores, N) threads, and an in-process
  all-reduce holds each device's thread until every device has arrived: on a busy
  machine with N >= cores the last devices can find no free thread, and XLA aborts
  after 40 s. Twice N threads leave that headroom; a PJRT_NPROC given is kept."""
  if 'PJRT_NPROC' in environ:
    return None
  found = re.findall(r'--xla_force_host_platform_device_count=(\d+)', environ.get('XLA_FLAGS', ''))
  devices = int(found[-1]) if found else 1
  if cores is None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
  return str(2 * devices) if devices > 1 and 2 * devices > cores else None


if __name__ == '__main__' and (_threads := cpu_pool_threads(os.environ)):
  os.environ['PJRT_NPROC'] = _threads  # read when JAX first makes its CPU client.

if __name__ == '__main__' and (_environ := huge_pages_environ(os.environ)) is not None:
  os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:],
            {**_environ, 'SEQLAB_STARTED': repr(STARTED)})

import json  # noqa: E402
import shlex  # noqa: E402

from absl import app, flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = 'configs/dates.py'
FLAGS = flags.FLAGS


def define_flags():
  config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'Experiment config file[:preset].',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<config>[-<preset>]).')
  flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'predict', 'benchmark', 'prepare',
                                     'export'],
                    'What to do (prepare: tokenize the data into its stores, once).')
  flags.DEFINE_string('input', None, 'predict: read lines from this file instead of stdin.')
  flags.DEFINE_string('export_dir', None, 'export: the Hugging Face checkpoint folder to write.')
  flags.DEFINE_bool('export_overwrite', False, 'export: replace an earlier export in '
                    '--export_dir (its files go; any others stay).')
  flags.DEFINE_bool('sweep', False, "Run every point of the config's get_sweep() in "
                    'workdir/<point>/, then write sweep.csv, sweep.md and sweep.png.')
  flags.DEFINE_integer('sweep_parallel', 1, 'Sweep points to run at once, as subprocesses.')
  flags.DEFINE_bool('sweep_commands', False,
                    'Print one launch command per sweep point (for a cluster scheduler).')
  flags.DEFINE_string('sweep_point', None, 'Run point N of the sweep alone, in workdir/<point>/; '
                      "'auto': N is a SLURM array task's SLURM_ARRAY_TASK_ID.")
  flags.DEFINE_bool('sweep_collect', False, "Write sweep.csv, sweep.md and sweep.png from the "
                    "points' workdirs, however they ran.")
  flags.DEFINE_string('reproduce', None, 'Run configs/papers/NAME.py and write report.md '
                      "with our numbers beside the paper's.")
  # Multi-host: detected from SLURM / Open MPI / TPU pod / Kubernetes, or given here.
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-host).')
  flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-host).')
  flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1 (multi-host).')
  flags.DEFINE_integer('distributed_timeout', 300,
                       'Seconds to wait for all processes to join (multi-host).')
  flags.DEFINE_integer('heartbeat_timeout', 100,
                       'Seconds without a heartbeat before a peer counts as dead (multi-host).')


def _fail(message: str, code: int = 2, at_once: bool = False):
  """One error line and exit; at_once skips exit hooks (a dead peer never reaches
  JAX's shutdown barrier)."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  if at_once:
    os._exit(code)
  sys.exit(code)


def _first_line(e: Exception) -> str:
  lines = [l for l in str(e).strip().splitlines() if l.strip()]
  return ' '.join(lines[:2]) if lines else type(e).__name__


def _config_arg(argv) -> str:
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return DEFAULT_CONFIG


def check_config_args(argv):
  """Checks --config and its overrides, so each mistake is one line and exit 2.

  (config_flags reads sys.argv as soon as the flag is defined, so this runs first.)
  """
  from research import config as config_lib
  from research.errors import UserError
  path, _, preset = _config_arg(argv).partition(':')
  try:
    config = config_lib.load_config_file(path, preset or None)
  except UserError as e:
    _fail(str(e))
  except Exception as e:  # pylint: disable=broad-except
    _fail(f'could not load config {path}{":" + preset if preset else ""}: {_first_line(e)}')
  keys = config_lib.flat_keys(config)
  for i, arg in enumerate(argv):
    if arg.startswith('--config.'):
      key, sep, value = arg[len('--config.'):].partition('=')
      if config_lib.resolve_alias(key) != key:
        key = config_lib.resolve_alias(key)
        argv[i] = f'--config.{key}{sep}{value}'
      if key not in keys:
        _fail(config_lib.unknown_key_message(key, config))


def parse_flags(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(_first_line(e))


def _orchestrate(workdir: str) -> None:
  """--sweep, --sweep_commands and --reproduce: each point is its own launch.py run."""
  from research import config as config_lib, reproduce, sweep
  launch_path = os.path.abspath(__file__)
  path, _, preset = _config_arg(sys.argv).partition(':')
  spec = os.path.abspath(path) + (f':{preset}' if preset else '')
  workdir = os.path.abspath(workdir)
  extra = [a for a in sys.argv[1:] if a.startswith('--config.')]  # apply to every point.
  if FLAGS.reproduce:
    reproduce.run(launch_path, os.path.abspath(path), workdir, FLAGS.sweep_parallel, extra)
    return
  points = config_lib.load_sweep(path, preset or None)
  if FLAGS.sweep_commands:
    for cmd in sweep.commands(launch_path, spec, workdir, points, extra):
      print(shlex.join(cmd), flush=True)
    return
  if FLAGS.sweep_point is not None:
    index = sweep.point_index(FLAGS.sweep_point, len(points))
    code = sweep.run_point(launch_path, spec, workdir, points, index, extra)
    if code:
      sys.exit(code)
    return
  if FLAGS.sweep_collect:
    sweep.collect(workdir, points)
    return
  sweep.run(launch_path, spec, workdir, points, FLAGS.sweep_parallel, extra)


def config_name(spec: str) -> str:
  path, _, preset = spec.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return f'{name}-{preset}' if preset else name


class _OnlyOurInfo:
  """Keeps our INFO lines and drops the libraries' (orbax logs every save in detail)."""

  def filter(self, record):
    return record.levelno >= 30 or '/research/' in record.pathname or 'launch.py' in record.pathname


def main(argv):
  del argv
  import jax
  from research import distributed, train
  from research.errors import NonFiniteError, UserError
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_OnlyOurInfo())
  config = FLAGS.config
  config.name = config_name(_config_arg(sys.argv))
  workdir = FLAGS.workdir or os.path.join('runs', config.name)
  try:
    if (FLAGS.sweep or FLAGS.sweep_commands or FLAGS.reproduce or FLAGS.sweep_point is not None
        or FLAGS.sweep_collect):
      if FLAGS.reproduce and not FLAGS.workdir:
        workdir = os.path.join('runs', 'papers', config.name)
      _orchestrate(workdir)
      return
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                           FLAGS.distributed_timeout, FLAGS.heartbeat_timeout)
    if FLAGS.mode == 'train':
      train.train_and_evaluate(config, workdir,
                               resume_command='python ' + shlex.join(sys.argv),
                               process_start=STARTED)
    elif FLAGS.mode == 'eval':
      train.evaluate(config, workdir)
    elif FLAGS.mode == 'predict':
      if FLAGS.input:
        if not os.path.isfile(FLAGS.input):
          raise UserError(f'--input file {FLAGS.input!r} not found')
        with open(FLAGS.input, encoding='utf-8', errors='replace', newline='') as f:
          lines = train.input_lines(f.read())
      else:
        lines = train.input_lines(sys.stdin.buffer.read().decode('utf-8', errors='replace'))
      if train.write_answers(train.predict(config, workdir, lines), sys.stdout, sys.stderr):
        sys.exit(2)
    elif FLAGS.mode == 'benchmark':
      print(json.dumps(train.benchmark(config, workdir, process_start=STARTED)), flush=True)
    elif FLAGS.mode == 'prepare':
      print(json.dumps(train.prepare(config)), flush=True)
    elif FLAGS.mode == 'export':
      print(json.dumps(train.export(config, workdir, FLAGS.export_dir or '',
                                    overwrite=FLAGS.export_overwrite)), flush=True)
  except NonFiniteError as e:
    _fail(str(e), code=1)
  except UserError as e:
    _fail(str(e), code=2)
  except Exception as e:  # pylint: disable=broad-except
    if not distributed.lost_peer(e):
      raise
    _fail(f'process {jax.process_index()} lost contact with another process '
          f'({_first_line(e)[:300]}); the checkpoints saved so far are kept: rerun the same '
          'command on every host to resume', code=1, at_once=True)


def _reproduce_arg(argv):
  """--reproduce=NAME selects configs/papers/NAME.py as the --config."""
  from research import reproduce
  from research.errors import UserError
  for arg in argv[1:]:
    if arg.startswith('--reproduce='):
      try:
        path = reproduce.resolve(arg.split('=', 1)[1], os.path.dirname(os.path.abspath(__file__)))
      except UserError as e:
        _fail(str(e))
      return [argv[0], f'--config={path}'] + [a for a in argv[1:] if not a.startswith('--config=')]
  return argv


if __name__ == '__main__':
  sys.argv = _reproduce_arg(sys.argv)
  check_config_args(sys.argv)
  try:
    define_flags()
  except Exception as e:  # pylint: disable=broad-except
    _fail(f'bad config override: {_first_line(e)}')
  app.run(main, flags_parser=parse_flags)
