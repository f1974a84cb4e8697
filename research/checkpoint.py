"""Orbax checkpoints of the train state, with restore that survives bad files."""
import contextlib
import os
import shutil
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from research.errors import UserError


class Checkpointer:

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        # Step directories made before save() returns: a save that fails then leaves
        # no commit thread waiting for a directory that never comes.
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            async_options=ocp.AsyncOptions(create_directories_asynchronously=False)),
        item_handlers=ocp.StandardCheckpointHandler())
    self.unreadable: list[int] = []

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, wait: bool = False):
    """Saves in the background (wait: until it is on disk). A save that fails, a full
    disk say, is a UserError; orbax writes into a temporary directory and renames it
    when complete, so the checkpoints before stay whole and restorable."""
    with self._failing_save(step):
      self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
      if wait:
        self.manager.wait_until_finished()

  def wait(self):
    """Until every save has reached the disk."""
    with self._failing_save(None):
      self.manager.wait_until_finished()

  @contextlib.contextmanager
  def _failing_save(self, step):
    try:
      yield
    except OSError as e:
      self._closed = True  # the manager's threads are spent; close() must not wait on them.
      kept = [s for s in self.steps() if step is None or s < step]
      raise UserError(
          f'could not save the checkpoint{f" of step {step}" if step is not None else ""} in '
          f'{self.directory}: {e.strerror or e}; '
          + (f'the checkpoint of step {kept[-1]} is kept; ' if kept else '')
          + 'free space and run the same command again to resume') from None

  def restore(self, step: int, abstract_state):
    """The checkpoint of `step`, into abstract_state's shapes, dtypes and shardings."""
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def restore_latest(self, abstract_state):
    """Returns (state, step) from the newest readable checkpoint, or (None, 0).

    A checkpoint that fails to read is reported, remembered in `unreadable`,
    and the one before it is tried. One whose shapes or optimizer state differ
    from `abstract_state` is a UserError: the workdir belongs to another config.
    """
    self.unreadable = []
    for step in reversed(self.steps()):
      try:
        _check_shapes(self.manager.item_metadata(step), abstract_state, step, self.directory)
        return self.restore(step, abstract_state), step
      except UserError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        if isinstance(e, ValueError) and 'tree structures do not match' in str(e):
          # Every array fits, but this config builds the optimizer's state otherwise.
          raise UserError(
              f'checkpoint at step {step} in {self.directory} holds another optimizer state '
              'than this config makes (a changed optimizer.name or optimizer.weight_decay_on?); '
              'use the config that wrote it (config.json beside it) or another --workdir'
          ) from None
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        logging.warning('checkpoint at step %d in %s could not be restored (%s: %s); '
                        'trying the previous one', step, self.directory,
                        type(e).__name__, first_line)
        self.unreadable.append(step)
    if self.unreadable:
      raise UserError(f'no checkpoint in {self.directory} could be restored '
                      f'(steps {sorted(self.unreadable)}); move the directory aside or '
                      'use another --workdir')
    return None, 0

  def set_aside_unreadable(self):
    """Moves unreadable checkpoints out of the way (never deletes them), so
    training can write those steps again."""
    for step in self.unreadable:
      target = f'{self.directory}_unreadable/{step}-{int(time.time())}'
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)), target)
      logging.warning('moved unreadable checkpoint %d to %s', step, target)
    if self.unreadable:
      self.unreadable = []
      self.manager.reload()

  def close(self, quiet: bool = False):
    """Waits for the saves in flight, then stops the manager's threads; quiet (on the
    way out of an error) swallows a second error rather than mask the first."""
    if getattr(self, '_closed', False):
      return
    self._closed = True
    try:
      self.manager.wait_until_finished()
      self.manager.close()
    except Exception:  # pylint: disable=broad-except
      if not quiet:
        raise


def _name(path) -> str:
  """'params/decoder/hidden/kernel', whether keys are attributes, dict keys or indices."""
  parts = []
  for k in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
  return '/'.join(parts)


def _check_shapes(metadata, abstract_state, step, directory):
  saved = {_name(k): tuple(v.shape)
           for k, v in jax.tree_util.tree_leaves_with_path(metadata)
           if hasattr(v, 'shape')}
  if not saved:
    raise ValueError('no array metadata')
  for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_state):
    name = _name(path)
    want = tuple(np.shape(leaf))
    got = saved.get(name)
    if got is None or got != want:
      raise UserError(
          f'checkpoint at step {step} in {directory} does not match this config: '
          f'{name} has shape {got} there but {want} here; use another --workdir '
          'or the config that wrote it')
