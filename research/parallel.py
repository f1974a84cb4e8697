"""Parallelism over every device, on one named mesh of axes ('data', 'model').

`parallel.mode`:
  mesh  (the default) jax.jit over the mesh. The global batch is sharded over
        'data'; parameters and optimizer state are replicated, except where a
        model names a logical axis that the rules below send to 'model'.
  fsdp  the same, and every leaf of the parameters and optimizer state is also
        sharded over 'data' along its largest dimension that the axis divides
        (leaves under parallel.fsdp_min_size elements, or with no such dimension,
        stay replicated). XLA inserts the all-gathers and reduce-scatters.
  pmap  the legacy path: the same step under jax.pmap with an explicit psum,
        single-process and data-parallel only.

`parallel.mesh_shape` ('' or e.g. 'data=2,model=2') sizes the axes; by default
'data' takes every device and 'model' is 1. Models annotate their parameters
with logical axis names (flax's nn.with_logical_partitioning); LOGICAL_RULES
is the one table that maps those names to mesh axes: attention heads and
feed-forward units split over 'model' (Megatron style), the rest replicated.
"""
import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from research.errors import UserError

MODES = ('mesh', 'fsdp', 'pmap')
AXES = ('data', 'model')
LOGICAL_RULES = (('heads', 'model'), ('mlp', 'model'))  # embed, kv, vocab, length: replicated.


def mesh_axis_sizes(mesh_shape: str, num_devices: int) -> tuple[int, int]:
  """'data=2,model=2' -> (2, 2); a missing 'data' takes the devices left over."""
  sizes = {}
  for part in filter(None, (p.strip() for p in mesh_shape.split(','))):
    name, _, value = part.partition('=')
    if name not in AXES or not value.isdigit() or int(value) < 1 or name in sizes:
      raise UserError(f'parallel.mesh_shape={mesh_shape!r}: expected axis=size pairs over '
                      f'{" and ".join(AXES)}, e.g. data=2,model=2')
    sizes[name] = int(value)
  model = sizes.get('model', 1)
  data = sizes.get('data', num_devices // model if num_devices % model == 0 else 0)
  if data * model != num_devices:
    raise UserError(f'parallel.mesh_shape={mesh_shape!r} holds {data * model or "no whole"} '
                    f'device(s), but there are {num_devices}; use sizes whose product is '
                    f'{num_devices}')
  return data, model


@dataclasses.dataclass
class Runtime:
  mode: str
  mesh: Mesh
  fsdp_min_size: int = 1024
  _replicate: Any = dataclasses.field(default=None, repr=False, compare=False)

  @classmethod
  def create(cls, mode: str, devices=None, mesh_shape: str = '', fsdp_min_size: int = 1024):
    if mode not in MODES:
      raise UserError(f'unknown parallel.mode {mode!r}; use one of: {", ".join(MODES)}')
    if mode == 'pmap' and jax.process_count() > 1:
      raise UserError('parallel.mode=pmap is single-process; use mesh or fsdp for multi-host')
    devices = list(devices if devices is not None else jax.devices())
    data, model = mesh_axis_sizes(mesh_shape, len(devices))
    if mode == 'pmap' and model > 1:
      raise UserError('parallel.mode=pmap is data-parallel only; use mesh or fsdp with a '
                      'model axis')
    return cls(mode, Mesh(np.array(devices).reshape(data, model), AXES), fsdp_min_size)

  @classmethod
  def from_config(cls, parallel, devices=None):
    return cls.create(parallel.mode, devices, parallel.mesh_shape, parallel.fsdp_min_size)

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  @property
  def data_size(self) -> int:
    return self.mesh.shape['data']

  @property
  def model_size(self) -> int:
    return self.mesh.shape['model']

  @property
  def data(self) -> NamedSharding:
    return NamedSharding(self.mesh, P('data'))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def check_batch_size(self, batch_size: int, name='train.batch_size'):
    if batch_size % self.data_size:
      raise UserError(
          f'{name}={batch_size} does not divide evenly over {self.data_size} devices; '
          f'use a multiple of {self.data_size}')

  # --- training state and batches -------------------------------------------------

  def state_shardings(self, abstract_state):
    """NamedShardings for a state whose leaves may be nn.LogicallyPartitioned boxes
    (an abstract one, from jax.eval_shape); the tree has the unboxed structure."""
    logical = nn.get_partition_spec(abstract_state)
    mesh_specs = nn.logical_to_mesh(logical, LOGICAL_RULES)
    shapes = nn.meta.unbox(abstract_state)
    is_spec = lambda x: isinstance(x, P)
    paths = jax.tree_util.tree_flatten_with_path(shapes)[0]
    specs = jax.tree.leaves(mesh_specs, is_leaf=is_spec)
    names = jax.tree.leaves(logical, is_leaf=is_spec)
    assert len(paths) == len(specs) == len(names), 'a state leaf without a partition spec'
    out = []
    for (path, leaf), spec, logical_spec in zip(paths, specs, names):
      entries = list(spec) + [None] * (len(leaf.shape) - len(spec))
      for dim, (axis, size) in enumerate(zip(entries, leaf.shape)):
        if axis is not None and size % self.mesh.shape[axis]:
          raise UserError(
              f'the {logical_spec[dim]!r} axis of {jax.tree_util.keystr(path)} has size {size}, '
              f'which the {axis!r} mesh axis of {self.mesh.shape[axis]} does not divide; use '
              f'a parallel.mesh_shape whose {axis} size divides it (model.num_heads, '
              'model.ff_dim)')
      if self.mode == 'fsdp' and math.prod(leaf.shape) >= self.fsdp_min_size:
        free = [d for d in np.argsort(leaf.shape, kind='stable')[::-1]
                if entries[d] is None and leaf.shape[d] % self.data_size == 0]
        if free:
          entries[free[0]] = 'data'
      while entries and entries[-1] is None:
        entries.pop()
      out.append(NamedSharding(self.mesh, P(*entries)))
    return jax.tree.unflatten(jax.tree.structure(shapes), out)

  def put_state(self, state, shardings=None):
    """Places a global (unstacked) state for the train step."""
    if self.mode == 'pmap':  # one copy per device, stacked on a leading axis.
      n = self.num_devices
      return jax.tree.map(
          lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)),
                                   self.data), state)
    return jax.device_put(state, shardings if shardings is not None else self.replicated)

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

  def compile_train_step(self, step_fn, state_shardings=None):
    """step_fn(state, batch, axis_name=None) -> (state, metrics)."""
    if self.mode == 'pmap':
      pmapped = jax.pmap(lambda s, b: step_fn(s, b, axis_name='data'), axis_name='data',
                         devices=self.mesh.local_devices, donate_argnums=(0,))
      return lambda s, b: _first_metrics(*pmapped(s, b))
    state = state_shardings if state_shardings is not None else self.replicated
    return jax.jit(step_fn, in_shardings=(state, self.data),
                   out_shardings=(state, self.replicated), donate_argnums=(0,))

  # --- evaluation ----------------------------------------------------------------

  def jit_data_parallel(self, fn):
    """fn(params, *arrays) with arrays split over 'data'; params keep the
    sharding the state gave them (replicated, or sharded under fsdp)."""
    return jax.jit(fn, out_shardings=self.data)

  def whole(self, tree):
    """Every leaf replicated on every device of the mesh: what runs a model outside the
    sharded step (samples, predict, plots, artifacts) takes, so no task can read one
    device's shard as if it were the parameter. Collective: every process calls it.
    The copies work in jit (run_batched) and, through to_host, on the host."""
    if all(isinstance(x, jax.Array) and x.is_fully_replicated for x in jax.tree.leaves(tree)):
      return tree  # the same arrays: what a task cached for them stays valid.
    if self._replicate is None:
      self._replicate = jax.jit(lambda t: t, out_shardings=self.replicated)
    return self._replicate(tree)

  def run_batched(self, compiled, params, arrays):
    """compiled(params, arrays) on host arrays (or a dict of them) that every process
    holds whole: padded to a multiple of the data axis, run, gathered and trimmed."""
    n = len(jax.tree.leaves(arrays)[0])
    pad = (-n) % self.data_size

    def place(array):
      if pad:
        array = np.concatenate([array, np.repeat(array[-1:], pad, axis=0)])
      # Every process holds the same host array; each places its own shards.
      return jax.make_array_from_callback(array.shape, self.data, lambda i: array[i])

    out = compiled(params, jax.tree.map(place, arrays))
    out = multihost_utils.process_allgather(out, tiled=True)
    return jax.tree.map(lambda x: np.asarray(x)[:n], out)


def to_host(tree):
  """Numpy copies of every leaf, whole, whatever its sharding (multi-host too). A
  replicated leaf (Runtime.whole) is read from this process's copy, so only a sharded
  one makes this a collective."""
  def one(x):
    if isinstance(x, jax.Array) and x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
  return jax.tree.map(one, tree)


def _first_metrics(state, metrics):
  return state, jax.tree.map(lambda m: m[0], metrics)
