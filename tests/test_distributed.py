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
from research import distributed, metrics
from research.errors import UserError
from test_train import _losses

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


def test_two_processes_match_one_process_with_four_devices(tmp_path):
  results = _finish(_start([tmp_path / 'mh'] * 2, '--config.train.steps=4',
                           '--config.train.log_every=1', '--config.eval.every=100'))
  for code, _, err in results:
    assert code == 0, err[-3000:]
  multi = [r['train/loss'] for r in metrics.read(tmp_path / 'mh' / 'metrics.jsonl')
           if 'train/loss' in r]
  single = _losses(tmp_path, 'single', jax.devices())  # this process: 4 CPU devices.
  assert len(multi) == len(single) == 4
  np.testing.assert_allclose(multi, single, rtol=1e-5)
  assert 'multi-host: process 0 of 2' in results[0][2]


def test_a_dead_peer_stops_the_survivor_and_a_rerun_resumes(tmp_path):
  # Two processes on 2 shared cores run only a few steps/s: keep it short.
  args = ['--config.train.steps=150', '--config.checkpoint.every=20',
          '--config.eval.every=1000', '--config.train.log_every=50']
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
  assert 'JAX distributed service detected fatal errors' in err
  saved = max(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
  assert saved < 150 and not (tmp_path / 'results.json').exists()

  results = _finish(_start([tmp_path] * 2, *args))
  for code, _, err in results:
    assert code == 0, err[-3000:]
  assert f'restored checkpoint at step {saved}' in results[0][2]
  assert json.loads((tmp_path / 'results.json').read_text())['step'] == 150


def test_a_workdir_that_is_not_shared_is_a_clear_error(tmp_path):
  results = _finish(_start([tmp_path / 'host0', tmp_path / 'host1']))
  for code, _, err in results:
    assert code == 2, err[-2000:]
    assert err.strip().splitlines()[-1].startswith('error: workdir')
    assert 'is not shared by all hosts: process(es) [1]' in err
