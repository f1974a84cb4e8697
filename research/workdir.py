"""A run's workdir: one writer at a time, and the configs it was trained with.

- `Lock`: a run holds workdir/lock, a file naming its host, PID and start time,
  locked with fcntl where the filesystem supports it. A second run on the
  workdir stops with one line naming the first; a lock left by a run that died
  is taken over with a warning. On many hosts, process 0 holds it.
- `record_config`: resuming with changed keys is allowed (shapes are checked
  against the checkpoint); the changes are logged, the previous config is kept
  as config.<step>.json, and `config_changes` lists them for results.json.
"""
import errno
import fcntl
import glob
import json
import os
import re
import socket
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from research.errors import UserError

LOCK = 'lock'


def prepare(workdir: str):
  """Makes the workdir, or says in one line why it cannot be one."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'--workdir {workdir} is a file, not a directory; give a directory '
                    '(it is made if missing)')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot make the workdir {workdir}: {e.strerror or e}') from None
  if not os.access(workdir, os.W_OK):
    raise UserError(f'the workdir {workdir} is not writable')


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class Lock:
  """`with Lock(workdir):` holds the workdir for this run (see the module docstring)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK)
    self.fd = None

  def __enter__(self):
    error = None
    if jax.process_index() == 0:
      try:
        self._acquire()
      except UserError as e:
        error = e
    if jax.process_count() > 1:  # every process stops, or none does.
      failed = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
      if failed and error is None:
        error = UserError('the workdir is held by another run (see process 0)')
    if error is not None:
      raise error
    return self

  def _acquire(self):
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      locked = True
    except BlockingIOError:
      holder = _describe(os.pread(fd, 4096, 0))
      os.close(fd)
      raise UserError(f'the workdir {os.path.dirname(self.path)} is in use by another run '
                      f'({holder}); wait for it, stop it, or use another --workdir') from None
    except OSError as e:  # a filesystem without flock (some network mounts).
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
        os.close(fd)
        raise
      locked = False
    previous = os.pread(fd, 4096, 0)
    if previous.strip():
      holder = json.loads(previous) if _is_json(previous) else {}
      same_host = holder.get('host') == socket.gethostname()
      if not locked and (not same_host or _alive(int(holder.get('pid', 0)))):
        os.close(fd)
        raise UserError(f'the workdir {os.path.dirname(self.path)} is in use by another run '
                        f'({_describe(previous)}); if that run is gone, delete {self.path}')
      logging.warning('took over the workdir lock of a run that ended without releasing it '
                      '(%s)', _describe(previous))
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({'host': socket.gethostname(), 'pid': os.getpid(),
                              'started': time.strftime('%Y-%m-%d %H:%M:%S')}).encode(), 0)
    os.fsync(fd)
    self.fd = fd

  def __exit__(self, *exc):
    if self.fd is not None:
      os.ftruncate(self.fd, 0)  # empty: released (the file stays, so no race on its inode).
      os.close(self.fd)
      self.fd = None


def _is_json(raw: bytes) -> bool:
  try:
    return isinstance(json.loads(raw), dict)
  except ValueError:
    return False


def _describe(raw: bytes) -> str:
  if not _is_json(raw):
    return 'holder unknown'
  h = json.loads(raw)
  return f'host {h.get("host")}, PID {h.get("pid")}, started {h.get("started")}'


def flatten(tree: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[prefix + k] = v
  return out


def _changes(old: dict, new: dict) -> list[tuple]:
  a, b = flatten(old), flatten(new)
  return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
          if json.dumps(a.get(k)) != json.dumps(b.get(k))]


# Keys that change what saved parameters mean, with the value a config without
# the key had: model.init=gpt2 reads the input embeddings unscaled, and
# model.activation computes another GELU from the same weights.
FIXED_ON_RESUME = {'model.init': 'seqlab', 'model.activation': 'gelu'}


def check_fixed_keys(workdir: str, config: dict):
  """A UserError where the workdir's config.json holds another value than `config`
  for a key of FIXED_ON_RESUME: its checkpoints would be read as another function."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = flatten(json.load(f))
  new = flatten(config)
  for key, default in FIXED_ON_RESUME.items():
    if key in new and old.get(key, default) != new[key]:
      was = old.get(key, default)
      raise UserError(f'{workdir} was trained with {key}={was!r} and its checkpoints need it; '
                      f'this config has {new[key]!r}: use --config.{key}={was} or another '
                      '--workdir')


def record_config(workdir: str, config: dict, step: int):
  """Before a run writes config.json: when it resumes at `step` > 0 with a config
  that differs from the saved one, logs each change and keeps the saved one as
  config.<step>.json."""
  path = os.path.join(workdir, 'config.json')
  if step == 0 or not os.path.exists(path) or jax.process_index() != 0:
    return
  with open(path) as f:
    old = json.load(f)
  changes = _changes(old, json.loads(json.dumps(config)))
  if not changes:
    return
  logging.warning('resuming at step %d with %d changed config key(s): %s', step, len(changes),
                  '; '.join(f'{k} {o!r} -> {n!r}' for k, o, n in changes))
  kept = os.path.join(workdir, f'config.{step}.json')
  if os.path.exists(kept):  # a resume that trained no step since: the first config stays.
    os.remove(path)
  else:
    os.replace(path, kept)


def config_changes(workdir: str) -> list[dict]:
  """Every resume's changes, from the configs kept: [{step, key, old, new}]."""
  kept = sorted((int(m.group(1)), p) for p in glob.glob(os.path.join(workdir, 'config.*.json'))
                if (m := re.fullmatch(r'config\.(\d+)\.json', os.path.basename(p))))
  files = [p for _, p in kept] + [os.path.join(workdir, 'config.json')]
  out = []
  for (step, _), before, after in zip(kept, files, files[1:]):
    with open(before) as f, open(after) as g:
      out += [{'step': step, 'key': k, 'old': o, 'new': n}
              for k, o, n in _changes(json.load(f), json.load(g))]
  return out
