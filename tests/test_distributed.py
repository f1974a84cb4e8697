"""Multi-host on localhost: 2 processes x 2 CPU devices with gloo collectives."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import ROOT
from research import distributed, metric_log, train
from research.errors import UserError

TINY = ['--config=configs/dates.py:tiny']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _start(workdirs, *args, heartbeat=10):
  """Starts one launch.py process per workdir, all in one cluster."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  port = _free_port()
  return [subprocess.Popen(
      [sys.executable, 'launch.py', *TINY, *args, f'--workdir={w}',
       f'--coordinator_address=localhost:{port}', f'--num_processes={len(workdirs)}',
       f'--process_id={i}', f'--heartbeat_timeout={heartbeat}', '--distributed_timeout=60'],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i, w in enumerate(workdirs)]


def _finish(procs, timeout=240):
  """(returncode, stdout, stderr) of each process; kills them all on a timeout."""
  try:
    outputs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return [(p.returncode, *out) for p, out in zip(procs, outputs)]


@pytest.mark.parametrize('environ, expected', [
    ({}, None),
    ({'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '4'}, 'slurm'),
    ({'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '1'}, None),
    ({'OMPI_COMM_WORLD_SIZE': '2'}, 'openmpi'),
    ({'TPU_WORKER_HOSTNAMES': 'w0,w1,w2,w3'}, 'tpu'),
    ({'TPU_WORKER_HOSTNAMES': 'localhost'}, None),
    ({'KUBERNETES_SERVICE_HOST': '10.0.0.1', 'JOB_COMPLETION_INDEX': '0'}, 'kubernetes'),
])
def test_cluster_detection(environ, expected):
  assert distributed.detect_cluster(environ) == expected


def test_single_process_does_not_initialize_and_partial_flags_are_an_error():
  assert distributed.initialize(environ={}) is False
  with pytest.raises(UserError, match='needs all of --coordinator_address'):
    distributed.initialize(coordinator_address='localhost:1234', environ={})


def _family_runs(root):
  """Every task family, tiny: (name, config file, preset, overrides)."""
  from test_popcorn import write_tsv_layout  # pylint: disable=g-import-not-at-top
  corpus = root / 'corpus.txt'
  corpus.write_text('\n'.join(f'the king is a man and the queen is a woman {i % 7}'
                               for i in range(120)) + '\n')
  imdb = write_tsv_layout(root / 'imdb')
  few = {'train.log_every': 1, 'eval.every': 1000, 'checkpoint.every': 1000}
  return [
      ('rnn', 'configs/dates.py', 'tiny', {'train.steps': 4, **few}),
      ('transformer', 'configs/transformer.py', 'bench',
       {'data.vocab_size': 40, 'data.train_size': 64, 'data.max_source_len': 8,
        'data.max_target_len': 8, 'model.model_dim': 16, 'model.ff_dim': 32,
        'model.num_heads': 2, 'model.num_layers': 1, 'train.batch_size': 16,
        'train.steps': 4, 'eval.beam_size': 1, 'eval.num_samples': 0, 'eval.batch_size': 64,
        **few}),
      ('word2vec', 'configs/word2vec.py', 'tiny',
       {'data.path': str(corpus), 'train.steps': 4, **few}),
      ('glove', 'configs/glove.py', 'tiny', {'data.path': str(corpus), 'train.steps': 4, **few}),
      ('popcorn', 'configs/popcorn.py', 'tiny',
       {'data.path': str(imdb), 'train.steps': 4, **few}),
      ('regression', 'configs/regression.py', 'tiny', {'train.log_every': 1}),
      ('language_model', 'configs/lm.py', 'tiny',
       {'data.path': str(corpus), 'train.steps': 4, **few}),
  ]


def test_every_task_family_matches_on_two_processes(tmp_path):
  """2 processes x 2 CPU devices (gloo) against this process's 4 devices: the same
  losses at every logged step and the same final metrics, for every task family."""
  from multihost_worker import configured  # pylint: disable=g-import-not-at-top
  runs = [dict(config=c, preset=p, overrides=o, workdir=str(tmp_path / 'multi' / n))
          for n, c, p, o in _family_runs(tmp_path)]
  spec = tmp_path / 'runs.json'
  spec.write_text(json.dumps(runs))
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  procs = [subprocess.Popen([sys.executable, 'tests/multihost_worker.py', str(spec),
                             f'localhost:{port}', '2', str(i)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  single = {}
  for run in runs:  # meanwhile, the same runs here on 4 devices.
    workdir = run['workdir'].replace('/multi/', '/single/')
    single[workdir] = train.train_and_evaluate(configured(run), workdir)
  for code, _, err in _finish(procs, timeout=600):
    assert code == 0, err[-3000:]
  for run in runs:
    multi_dir, single_dir = run['workdir'], run['workdir'].replace('/multi/', '/single/')
    losses = [[r['train/loss'] for r in metric_log.read(os.path.join(d, 'metrics.jsonl'))
               if 'train/loss' in r] for d in (multi_dir, single_dir)]
    assert len(losses[0]) == len(losses[1]) > 0, run['config']
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5, err_msg=run['config'])
    multi = json.loads(open(os.path.join(multi_dir, 'results.json')).read())
    for key, value in single[single_dir].items():
      if isinstance(value, float) and not key.startswith('time/') and key != 'wall_seconds':
        assert multi[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (run['config'], key)


def test_a_dead_peer_stops_the_survivor_and_a_rerun_resumes(tmp_path):
  # Two processes on 2 shared cores run only a few steps/s: keep it short.
  args = ['--config.train.steps=80', '--config.checkpoint.every=20',
          '--config.eval.every=1000', '--config.train.log_every=40']
  procs = _start([tmp_path] * 2, *args, heartbeat=5)
  deadline = time.time() + 180
  ckpt = tmp_path / 'checkpoints'
  while time.time() < deadline and not (ckpt.exists() and any(p.name.isdigit() for p in ckpt.iterdir())):
    time.sleep(0.05)
  assert all(p.poll() is None for p in procs), 'the run ended before a peer could be killed'
  procs[1].send_signal(signal.SIGKILL)
  t_kill = time.time()
  code, _, err = _finish(procs[:1], timeout=120)[0]
  procs[1].communicate()
  assert code != 0 and time.time() - t_kill < 60, err[-2000:]
  # seqlab's error line when a collective fails first; JAX's own abort when its heartbeat
  # check fires first (a race on 2 shared cores).
  assert ('lost contact with another process' in err
          or 'JAX distributed service detected fatal errors' in err), err[-2000:]
  saved = max(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
  assert saved < 80 and not (tmp_path / 'results.json').exists()

  results = _finish(_start([tmp_path] * 2, *args))
  for code, _, err in results:
    assert code == 0, err[-3000:]
  assert f'restored checkpoint at step {saved}' in results[0][2]
  assert json.loads((tmp_path / 'results.json').read_text())['step'] == 80


def test_a_workdir_that_is_not_shared_is_a_clear_error(tmp_path):
  results = _finish(_start([tmp_path / 'host0', tmp_path / 'host1']))
  for code, _, err in results:
    assert code == 2, err[-2000:]
    assert err.strip().splitlines()[-1].startswith('error: workdir')
    assert 'is not shared by all hosts: process(es) [1]' in err
