"""Orbax checkpoints of the train state, with restore that survives bad files."""
import os

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
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, wait: bool = False):
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
    if wait:
      self.manager.wait_until_finished()

  def restore_latest(self, abstract_state):
    """Returns (state, step) from the newest readable checkpoint, or (None, 0).

    A checkpoint that fails to read is reported and the one before it is
    tried. One whose shapes differ from `abstract_state` is a UserError: the
    workdir belongs to another configuration.
    """
    for step in reversed(self.steps()):
      try:
        _check_shapes(self.manager.item_metadata(step), abstract_state, step, self.directory)
        state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        return state, step
      except UserError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        logging.warning('checkpoint at step %d in %s could not be restored (%s: %s); '
                        'trying the previous one', step, self.directory,
                        type(e).__name__, first_line)
    return None, 0

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def _check_shapes(metadata, abstract_state, step, directory):
  saved = {jax.tree_util.keystr(k): tuple(v.shape)
           for k, v in jax.tree_util.tree_leaves_with_path(metadata)
           if hasattr(v, 'shape')}
  if not saved:
    raise ValueError('no array metadata')
  for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_state):
    name = jax.tree_util.keystr(path)
    want = tuple(np.shape(leaf))
    got = saved.get(name)
    if got is None or got != want:
      raise UserError(
          f'checkpoint at step {step} in {directory} does not match this config: '
          f'{name} has shape {got} there but {want} here; use another --workdir '
          'or the config that wrote it')
