"""Data parallelism over every device.

`mesh` (the default): jax.jit over a 1-D Mesh with axis 'data'. The global batch
is sharded over that axis, parameters and optimizer state are replicated, and
XLA inserts the gradient all-reduce. `pmap`: the same step under jax.pmap with
an explicit psum, for code that expects it. Evaluation always uses the mesh.
"""
import dataclasses

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from research.errors import UserError

MODES = ('mesh', 'pmap')


@dataclasses.dataclass
class Runtime:
  mode: str
  mesh: Mesh

  @classmethod
  def create(cls, mode: str, devices=None):
    if mode not in MODES:
      raise UserError(f'unknown parallel mode {mode!r}; use one of: {", ".join(MODES)}')
    if mode == 'pmap' and jax.process_count() > 1:
      raise UserError('parallel=pmap is single-process here; use parallel=mesh for multi-host')
    devices = list(devices if devices is not None else jax.devices())
    return cls(mode, Mesh(np.array(devices), ('data',)))

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  @property
  def data(self) -> NamedSharding:
    return NamedSharding(self.mesh, P('data'))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def check_batch_size(self, batch_size: int, name='train.batch_size'):
    if batch_size % self.num_devices:
      raise UserError(
          f'{name}={batch_size} does not divide evenly over {self.num_devices} devices; '
          f'use a multiple of {self.num_devices}')

  # --- training state and batches -------------------------------------------------

  def put_state(self, state):
    """Places a global (unreplicated) state for the train step."""
    if self.mode == 'pmap':  # one copy per device, stacked on a leading axis.
      n = self.num_devices
      return jax.tree.map(
          lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)),
                                   self.data), state)
    return jax.device_put(state, self.replicated)

  def global_state(self, state):
    """The inverse of put_state: one copy of the state, for saving and eval."""
    if self.mode == 'pmap':
      return jax.tree.map(lambda x: jax.device_put(x[0], self.replicated), state)
    return state

  def put_batch(self, local_batch: dict):
    """This process's rows of a global batch -> arrays the train step takes."""
    if self.mode == 'pmap':
      n = len(self.mesh.local_devices)
      return jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), local_batch)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.data, x), local_batch)

  def compile_train_step(self, step_fn):
    """step_fn(state, batch, axis_name=None) -> (state, metrics)."""
    if self.mode == 'pmap':
      pmapped = jax.pmap(lambda s, b: step_fn(s, b, axis_name='data'), axis_name='data',
                         devices=self.mesh.local_devices, donate_argnums=(0,))
      return lambda s, b: _first_metrics(*pmapped(s, b))
    return jax.jit(step_fn, in_shardings=(self.replicated, self.data),
                   out_shardings=(self.replicated, self.replicated), donate_argnums=(0,))

  # --- evaluation ----------------------------------------------------------------

  def jit_data_parallel(self, fn):
    """fn(params, *arrays) with params replicated and arrays split over 'data'."""
    return jax.jit(fn, in_shardings=(self.replicated, self.data),
                   out_shardings=self.data)

  def run_batched(self, compiled, params, array: np.ndarray):
    """Pads `array` to a multiple of the device count, runs, and trims."""
    n = len(array)
    pad = (-n) % self.num_devices
    if pad:
      array = np.concatenate([array, np.repeat(array[-1:], pad, axis=0)])
    # Every process holds the same host array; each places its own shards.
    global_array = jax.make_array_from_callback(array.shape, self.data, lambda i: array[i])
    out = compiled(params, global_array)
    out = multihost_utils.process_allgather(out, tiled=True)
    return jax.tree.map(lambda x: np.asarray(x)[:n], out)


def _first_metrics(state, metrics):
  return state, jax.tree.map(lambda m: m[0], metrics)
