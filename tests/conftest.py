"""Every test sees 4 CPU devices, so data parallelism is exercised on one CPU, and
none reads the shared datasets ($SEQLAB_DATA): each makes its own small data.

The tests (on every pytest-xdist worker), and the launch.py processes they start,
share one persistent compilation cache for the session: the same tiny models
compile once.
"""
import atexit
import os
import pathlib
import shutil
import sys
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# launch.py's thread pool for forced devices, for the tests' own JAX (8 on 2 cores).
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from launch import cpu_pool_threads  # pylint: disable=g-import-not-at-top
if (_threads := cpu_pool_threads(os.environ)):
  os.environ['PJRT_NPROC'] = _threads
os.environ.pop('SEQLAB_DATA', None)  # tests make their own data, even where CI sets it.
if 'SEQLAB_CACHE' not in os.environ:  # prepared stores: the session's own, removed at its end.
  _STORES = tempfile.mkdtemp(prefix='seqlab-test-cache-')
  atexit.register(shutil.rmtree, _STORES, ignore_errors=True)
  os.environ['SEQLAB_CACHE'] = _STORES
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix='seqlab-test-jax-cache-')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'

import subprocess  # pylint: disable=g-import-not-at-top
import time

import pytest


def launch(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
  """Runs `python launch.py ARGS` from the repository root."""
  return subprocess.run([sys.executable, 'launch.py', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
  """One tiny default-config run through launch.py, shared by several tests."""
  workdir = tmp_path_factory.mktemp('tiny_run')
  started = time.time()
  proc = launch('--config=configs/dates.py:tiny', f'--workdir={workdir}')
  proc.seconds = time.time() - started
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc
