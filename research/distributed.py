"""Multi-host start-up: whether and how to call jax.distributed.initialize.

One small function decides whether and how to call
jax.distributed.initialize, then the workdir is checked to be shared.

Launch one process per host (or per accelerator group) with the same command.
The cluster is found from the environment (SLURM, Open MPI, Cloud TPU pods,
Kubernetes indexed jobs) or given with --coordinator_address, --num_processes
and --process_id.
"""
import os
import secrets
import signal

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from research.errors import UserError


def detect_cluster(environ=os.environ) -> str | None:
  """Names the multi-process cluster this process runs in, or None."""
  def more_than_one(name):
    try:
      return int(environ.get(name, '1')) > 1
    except ValueError:
      return False

  if 'SLURM_JOB_ID' in environ and more_than_one('SLURM_NTASKS'):
    return 'slurm'
  if 'OMPI_MCA_orte_hnp_uri' in environ or more_than_one('OMPI_COMM_WORLD_SIZE'):
    return 'openmpi'
  if len([h for h in environ.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]) > 1:
    return 'tpu'
  if 'KUBERNETES_SERVICE_HOST' in environ and 'JOB_COMPLETION_INDEX' in environ:
    return 'kubernetes'
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_seconds: int = 300,
               heartbeat_timeout_seconds: int = 100, environ=os.environ) -> bool:
  """Starts JAX's multi-controller runtime when there is more than one process.

  Returns True if it was initialized. Explicit arguments win over detection;
  with neither, this is a single-process run and nothing happens.
  """
  explicit = coordinator_address is not None or num_processes is not None
  cluster = None if explicit else detect_cluster(environ)
  if not explicit and cluster is None:
    return False
  if explicit and (coordinator_address is None or num_processes is None or process_id is None):
    raise UserError('multi-host needs all of --coordinator_address, --num_processes and '
                    '--process_id (or none of them, to detect the cluster)')
  # Cross-process collectives between CPU devices go through gloo (no effect on GPU/TPU).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kwargs = dict(initialization_timeout=timeout_seconds,
                heartbeat_timeout_seconds=heartbeat_timeout_seconds)
  if explicit:
    kwargs.update(coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'jax.distributed.initialize failed ({cluster or "explicit"} cluster): '
                    f'{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}')
  logging.info('multi-host: process %d of %d (%s), %d local / %d global devices',
               jax.process_index(), jax.process_count(), cluster or 'explicit',
               jax.local_device_count(), jax.device_count())
  return True


def check_shared_workdir(workdir: str):
  """Every process must see the files process 0 writes (checkpoints are collective)."""
  if jax.process_count() == 1:
    return
  token = int(multihost_utils.broadcast_one_to_all(
      np.int64(secrets.randbits(62)) if jax.process_index() == 0 else np.int64(0)))
  probe = os.path.join(workdir, f'.shared-check-{token}')
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(probe, 'w') as f:
      f.write('seqlab\n')
  multihost_utils.sync_global_devices('seqlab: shared workdir probe written')
  sees = multihost_utils.process_allgather(np.int32(os.path.exists(probe)))
  multihost_utils.sync_global_devices('seqlab: shared workdir probe read')
  if jax.process_index() == 0:
    os.remove(probe)
  missing = [i for i, ok in enumerate(np.ravel(sees)) if not ok]
  if missing:
    raise UserError(f'workdir {workdir} is not shared by all hosts: process(es) {missing} '
                    'cannot see files written by process 0; use storage every host mounts '
                    '(NFS, GCS, ...), since checkpoints are written collectively')


_PEER_LOST = ('Gloo', 'heartbeat', 'Connection reset', 'Connection closed', 'Barrier failed',
              'UNAVAILABLE', 'DEADLINE_EXCEEDED')


def lost_peer(e: Exception) -> bool:
  """Whether e is a multi-host collective that failed because another process went away."""
  return (jax.process_count() > 1 and isinstance(e, jax.errors.JaxRuntimeError)
          and any(marker in str(e) for marker in _PEER_LOST))


class StopRequest:
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
