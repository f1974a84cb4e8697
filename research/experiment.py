"""What every mode of launch.py shares: train state, train step, checkpoints.

What every mode of launch.py shares: the train state, the train step, and the
Experiment (the task, runtime, optimizer and state of one workdir).

The train step is a pure function (state, batch) -> (state, metrics). Data
order comes from (seed, step) and dropout keys from fold_in(key(seed), step),
so a run stopped anywhere and resumed ends with bit-identical parameters.
"""
import hashlib
import os
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from research import checkpoint, layers, tasks, workdir as workdir_lib
from research.errors import UserError
from research.optim import make_optimizer
from research.parallel import Runtime, to_host

# Random bits depend on the logical shape only, not on how arrays are sharded,
# so dropout masks are the same on 1 device and on N.
jax.config.update('jax_threefry_partitionable', True)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step).


def train_step(state: TrainState, batch, *, loss_fn, tx, schedule, microbatches=1,
               axis_name=None):
  """One update. Gradients are of the loss summed over the global batch, divided by
  the global weight (token count), so neither sharding nor microbatches (a scan over
  k slices of the batch, keys fold_in(step key, i)) change what a step means."""
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:  # pmap: each device draws its own dropout masks.
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  def objective(params, batch, rng):
    loss_sum, weight, sums = loss_fn(params, batch, rng)
    return loss_sum, (weight, sums)

  grad_fn = jax.value_and_grad(objective, has_aux=True)
  if microbatches == 1:
    (loss_sum, (weight, sums)), grads = grad_fn(state.params, batch, rng)
  else:  # microbatch i holds rows i, i + k, ...: every device's block gives each its share.
    k = microbatches
    parts = jax.tree.map(lambda x: x.reshape((-1, k) + x.shape[1:]).swapaxes(0, 1), batch)

    def accumulate(total, i_part):
      i, part = i_part
      out = grad_fn(state.params, part, jax.random.fold_in(rng, i))
      return jax.tree.map(jnp.add, total, out), None

    first = jax.tree.map(lambda x: x[0], parts)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(grad_fn, state.params, first, rng))
    ((loss_sum, (weight, sums)), grads), _ = jax.lax.scan(
        accumulate, zeros, (jnp.arange(k), parts))
  if axis_name is not None:
    grads, loss_sum, weight, sums = jax.lax.psum((grads, loss_sum, weight, sums), axis_name)
  grads = jax.tree.map(lambda g: g / weight, grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {'loss': loss_sum / weight, 'grad_norm': optax.tree.norm(grads),
             'learning_rate': schedule(state.step),
             **{k: v / weight for k, v in sums.items()}}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def init_state(task, tx, seed: int, params=None) -> TrainState:
  """The fresh state, from `params` where given, else the task's init; its leaves
  may carry logical axis names (boxed)."""
  if params is None:
    params = task.init(jax.random.PRNGKey(seed))
  # A task with its own update rule may keep its own optimizer state (GloVe's AdaGrad).
  opt_state = task.init_opt_state(params)
  if opt_state is None:
    opt_state = tx.init(params)
  return TrainState(step=jnp.array(0, jnp.int32), params=params, opt_state=opt_state,
                    rng=jax.random.fold_in(jax.random.PRNGKey(seed), 1))


def params_sha256(params) -> str:
  """A fingerprint of the parameters: names, shapes, dtypes and exact bytes."""
  h = hashlib.sha256()
  host = to_host(params)
  for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(host),
                           key=lambda kv: jax.tree_util.keystr(kv[0])):
    h.update(f'{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};'.encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


class Experiment:
  """The task, runtime, optimizer and (possibly restored) state of one workdir."""

  def __init__(self, config, workdir: str, devices=None):
    self.config, self.workdir = config, workdir
    self.runtime = Runtime.from_config(config.parallel, devices)
    self.runtime.check_batch_size(config.train.batch_size)
    # Optional: models without precision keys (word2vec, GloVe, regression) are float32
    # or their own float64.
    self.compute_dtype = np.dtype(layers.resolve_dtype(config.model.get('dtype', 'float32'))).name
    self.task = tasks.build(config, self.runtime, workdir)
    self.total_steps = self.task.num_steps()
    self.microbatches = _check_microbatches(config, self.runtime, self.task)
    self.tx, self.schedule = make_optimizer(config.optimizer, self.total_steps)
    boxed = lambda: init_state(self.task, self.tx, self.config.seed)
    with self.task.scope():
      self.state_shardings = self.runtime.state_shardings(jax.eval_shape(boxed))

    def fresh_state(params=None):  # named: profiles and XLA's dumps call it jit_fresh_state.
      return nn.meta.unbox(init_state(self.task, self.tx, self.config.seed, params))

    self._init_fn = fresh_state
    self._fresh = jax.jit(fresh_state, out_shardings=self.state_shardings)
    self.checkpointer = None

  def fresh_state(self) -> TrainState:
    """The initial state, made on the devices, or with train.init_on=host (or from the
    task's pretrained parameters) by this process's CPU and then placed with its
    shardings. Threefry draws the same bits on every backend; initializers that
    transform them (a truncated normal's erf) may round differently on another
    backend's math library."""
    with self.task.scope():
      pretrained = self.task.pretrained_params()
    if self.config.train.init_on != 'host' and pretrained is None:
      return self._fresh()
    try:
      cpu = jax.local_devices(backend='cpu')[0]
    except RuntimeError as e:
      raise UserError('train.init_on=host (and a start from pretrained parameters) needs JAX\'s '
                      f'CPU backend, which this process lacks ({e}); add cpu to JAX_PLATFORMS'
                      ) from None
    with jax.default_device(cpu):
      host = jax.device_get(jax.jit(self._init_fn)(pretrained))
    return jax.tree.map(
        lambda x, s: jax.make_array_from_callback(x.shape, s, lambda index: x[index]),
        host, self.state_shardings)

  def compile_train_step(self):
    if self.task.own_update and self.runtime.mode == 'pmap':  # e.g. word2vec's sparse SGD.
      raise UserError(f'task {self.config.task!r} runs with parallel.mode=mesh or fsdp only')

    def train_step_fn(state, batch, axis_name=None):  # jit_train_step_fn in profiles.
      if self.task.own_update:
        return self.task.train_step(state, batch, self.schedule)
      return train_step(state, batch, loss_fn=self.task.loss, tx=self.tx, schedule=self.schedule,
                        microbatches=self.microbatches, axis_name=axis_name)

    return self.runtime.compile_train_step(train_step_fn, self.state_shardings)

  @property
  def eval_splits(self):
    """The splits evaluated at the end; the first is also evaluated during training."""
    return self.task.eval_splits

  def restore(self, required: bool = False):
    """(state, step): the latest checkpoint of the workdir, else a fresh state."""
    keep = max(self.config.checkpoint.keep, self.config.eval.average_last)
    self.checkpointer = checkpoint.Checkpointer(os.path.join(self.workdir, 'checkpoints'), keep)
    state, step = self.checkpointer.restore_latest(self.abstract_state())
    if state is not None:
      workdir_lib.check_fixed_keys(self.workdir, self.config.to_dict())
    if state is None:
      if required:
        raise UserError(f'no checkpoint found in {self.workdir}/checkpoints; train first')
      return self.fresh_state(), 0
    logging.info('restored checkpoint at step %d from %s', step, self.workdir)
    return state, step

  def abstract_state(self):
    """Shapes, dtypes and target shardings: orbax restores any layout into this one."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        jax.eval_shape(self._fresh), self.state_shardings)

  def evaluate(self, params, split: str, prefix: str = '') -> dict:
    prefix += f'{split}/' if split else ''
    return {prefix + k: v for k, v in self.task.evaluate(params, split).items()}

  def averaged(self, k: int):
    """The state of the latest checkpoint with the element-wise mean of the last k
    checkpoints' parameters (Vaswani et al. averaged the last 5 or 20), saved under
    the workdir's averaged/; None when k is 0."""
    if not k:
      return None
    steps = self.checkpointer.steps()
    if len(steps) < k:
      raise UserError(f'eval.average_last={k} needs {k} checkpoints, but '
                      f'{self.workdir}/checkpoints holds {len(steps)} (steps {steps}); use '
                      f'eval.average_last <= {len(steps)}, or train with it set to keep them')
    states = [self.checkpointer.restore(s, self.abstract_state()) for s in steps[-k:]]
    params = jax.tree.map(lambda *xs: sum(xs) / k, *[s.params for s in states])
    state = states[-1].replace(params=params)
    saver = checkpoint.Checkpointer(os.path.join(self.workdir, 'averaged'), 1)
    if steps[-1] in saver.steps():  # an earlier average of the same run: made anew.
      saver.manager.delete(steps[-1])
    saver.save(steps[-1], state, wait=True)
    saver.close()
    logging.info('averaged the parameters of checkpoints %s into %s/averaged', steps[-k:],
                 self.workdir)
    return state


def _check_microbatches(config, runtime, task) -> int:
  k = config.train.microbatches
  per_device = config.train.batch_size // runtime.data_size
  if k < 1 or (per_device and per_device % k):
    raise UserError(f'train.microbatches={k} must be >= 1 and divide the per-device batch '
                    f'of {per_device} (train.batch_size={config.train.batch_size} over '
                    f'{runtime.data_size} devices)')
  if k > 1 and task.own_update:
    raise UserError(f'train.microbatches={k}: task {config.task!r} has its own update rule; '
                    'use 1')
  return k


def profile_range(spec: str, total: int):
  """'100:105' -> (100, 105): trace the steps from 100 up to 105; '' -> None."""
  if not spec:
    return None
  start, _, stop = spec.partition(':')
  if not (start.isdigit() and stop.isdigit() and int(start) < int(stop) <= total):
    raise UserError(f'train.profile_steps={spec!r}: expected START:STOP with 0 <= START < STOP '
                    f'<= train.steps={total}, e.g. 10:15')
  return int(start), int(stop)


