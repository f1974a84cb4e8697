"""The task protocol between a dataset, a model and the one training loop.

The loop is research/train.py.

A task subclasses `Task`, registers itself by name with `@register('name')`,
and `config.task` picks it. The loop calls only the hooks below; every
optional one has a default here, so the loop never asks what a task has.

Required:
  init(rng) -> params                     the parameters (their leaves may carry
                                          logical axis names: research/parallel.py)
  loss(params, batch, rng) -> (loss_sum, weight_sum, metric_sums)
                                          summed over the batch; the loop divides by
                                          the global weight (or, instead of loss:)
  train_step(state, batch, schedule) -> (state, metrics)
                                          a task's own update rule (word2vec's
                                          sparse SGD, GloVe's AdaGrad, a closed-form fit)
  train_batch(step) -> {name: numpy array}
                                          this process's rows of global batch `step`,
                                          a pure function of (seed, step); the rows come
                                          from research.data.pipeline.process_slice

Evaluation (research/evaluators/):
  evaluators                               the evaluators an empty eval.evaluators
                                           runs, each a module of research/evaluators/
                                           that reads one hook of the task, e.g.
                                           translation's decoded(params, split, cache)
  evaluate(params, split) -> {metric: float}
                                           [the config's evaluators, in order]

Optional (the default in brackets):
  validate(config) (a classmethod)         checks the config before any work, raising
                                           UserError naming the key [nothing]
  stages(config, workdir) -> [(config, workdir)] (a classmethod)
                                           runs that must finish first, each an
                                           ordinary run in its own workdir, which
                                           the loop trains (or finds finished)
                                           before it builds the task [none]
  prepare(config) -> [path] (a classmethod)
                                           --mode=prepare: tokenizes the data into
                                           its stores (research/data/store.py) where
                                           none is yet; returns their folders [nothing]
  num_steps() -> int                       the run's length: tasks that count in epochs
                                           derive it [config.train.steps]
  scope() -> context manager               wraps everything the loop does with the task
                                           (regression's float64) [no-op]
  decodes                                  whether the task decodes sequences, so
                                           that bench.what=decode times it [False]
  eval_splits                              splits evaluated at the end, the first one
                                           also periodically; '' for no metric prefix
                                           [('validation', 'test')]
  pretrained_params() -> params | None     a fresh run's starting parameters instead
                                           of init's, host arrays shaped as init's
                                           unboxed leaves (the LM's init.from_hf); a
                                           resumed run never calls it [None]
  init_opt_state(params)                   the optimizer state of a task's own update
                                           rule [None: the optax optimizer's]
  optimizer_keys                           the optimizer.* keys a task's own update
                                           rule reads; a value of its own for any
                                           other is an error [None: every key]
  predict(params, lines) -> [str]          --mode=predict, one output line per input
                                           line, or Rejected(why) for a line it cannot
                                           answer [an error: the task has no predict]
  samples(params, split, n) -> [(input, output, reference)]
                                           printed at each evaluation [none]
  units(batch) -> {unit: count}            throughput units, e.g. tokens [examples]
  final_results(params) -> dict            merged into results.json [nothing]
  benchmark_fields(params, seconds, steps) -> dict
                                           added to --mode=benchmark's row [nothing]
  write_artifacts(params, workdir) -> [path]
                                           plots and files at the end of a run [none]
  export(params, out_dir) -> [path]        --mode=export: a Hugging Face checkpoint
                                           [an error naming the tasks that export]
  cannot_export(config) -> str (a classmethod)
                                           why this config has no Hugging Face
                                           counterpart, checked before any data is
                                           read ['': export is defined; else the
                                           error naming the tasks that export]

Every task is constructed as Task(config, runtime, workdir) and reads the
config without writing it.

Parameters: loss, train_step and evaluate get them as the step shards them
(under fsdp or a model axis, a device holds only a slice of a leaf), so evaluate
runs its model through runtime.jit_data_parallel, and reads a leaf on the host
only through research.parallel.to_host. Every other hook (predict, samples,
final_results, benchmark_fields, write_artifacts) gets them whole: the loop
passes runtime.whole(params), every leaf replicated on every device.
"""
import contextlib

import jax

from research import config as config_lib, evaluators as evaluators_lib, models, validation
from research.errors import UserError

TASKS = {}


class Rejected(str):
  """predict's answer to an input line it cannot answer, saying why:
  train.write_answers prints `error: line N: <why>` to stderr and an empty line to
  stdout (which keeps one line per input line), and launch.py exits 2 once every
  line is done."""


def register(name: str):
  """Class decorator: makes the task available as config.task=name."""
  def add(cls):
    TASKS[name] = cls
    cls.name = name
    return cls
  return add


class Task:
  """The protocol between a task and the loop; see the module docstring."""
  name = ''
  eval_splits = ('validation', 'test')
  full_batch = False  # whether train.batch_size=0 means the whole training set.
  decodes = False  # whether --mode=benchmark --config.bench.what=decode can time it.
  evaluators = ()  # research/evaluators/ modules an empty eval.evaluators runs.
  # The optimizer.* keys a task with its own update rule reads (None: all of them,
  # for an optax step on a loss); any other key set to a value of its own is refused.
  optimizer_keys = None
  export_hint = ''  # what the task writes instead of an export, for its error line.

  def __init__(self, config, runtime, workdir: str = ''):
    self.config, self.runtime, self.workdir = config, runtime, workdir

  # --- required --------------------------------------------------------------------

  def init(self, rng):
    raise NotImplementedError

  def loss(self, params, batch, rng):
    raise NotImplementedError(f'task {self.name!r} defines neither loss nor train_step')

  def train_step(self, state, batch, schedule):
    raise NotImplementedError

  def train_batch(self, step: int) -> dict:
    raise NotImplementedError

  def evaluate(self, params, split: str) -> dict:
    if not hasattr(self, '_evaluators'):
      self._evaluators = evaluators_lib.entries(self.config, type(self))
    return evaluators_lib.run(self._evaluators, self, params, split)

  # --- optional --------------------------------------------------------------------

  @property
  def own_update(self) -> bool:
    """Whether the task brings its own train_step instead of a loss."""
    return type(self).train_step is not Task.train_step

  @classmethod
  def validate(cls, config):
    validation.check(config, validation.COMMON)
    if models.names(cls.name):  # before any data loads: a model this task registered.
      # Optional: a config without model.name gets models.get's error naming the choices.
      models.get(config.model.get('name'), cls.name)
    if not cls.full_batch:
      validation.check(config, [('train.batch_size', validation.integer(1))])
    evaluators_lib.entries(config, cls)  # an unknown evaluator, or one the task cannot feed.
    if cls.optimizer_keys is not None:
      defaults = config_lib.base_config().optimizer
      unread = sorted(k for k in defaults if k not in cls.optimizer_keys
                      and config.optimizer.get(k) != defaults[k])
      if unread:
        reads = ', '.join(f'optimizer.{k}' for k in cls.optimizer_keys) or 'no optimizer.* key'
        raise UserError(
            f'task {cls.name!r} trains with its own update rule, which reads {reads}; it would '
            'ignore ' + ', '.join(f'optimizer.{k}={config.optimizer[k]!r}' for k in unread)
            + ': leave them at their defaults')

  @classmethod
  def stages(cls, config, workdir: str) -> list:
    return []

  @classmethod
  def prepare(cls, config) -> list:
    return []

  def num_steps(self) -> int:
    return self.config.train.steps

  def scope(self):
    return contextlib.nullcontext()

  def pretrained_params(self):
    return None

  def init_opt_state(self, params):
    return None

  def predict(self, params, lines: list[str]) -> list[str]:
    raise UserError(f'task {self.name!r} has no --mode=predict')

  def samples(self, params, split: str, n: int) -> list:
    return []

  def units(self, batch) -> dict:
    return {'examples': len(jax.tree.leaves(batch)[0])}

  def final_results(self, params) -> dict:
    return {}

  def benchmark_fields(self, params, seconds: float, steps: int) -> dict:
    return {}

  def write_artifacts(self, params, workdir: str) -> list:
    return []

  def export(self, params, out_dir: str) -> list:
    raise UserError(export_refusal(type(self)))

  @classmethod
  def cannot_export(cls, config) -> str:
    return export_refusal(cls) if cls.export is Task.export else ''


def export_refusal(cls) -> str:
  """The error line of --mode=export for a task with no Hugging Face counterpart."""
  exporters = sorted(name for name, c in TASKS.items() if c.export is not Task.export)
  return (f'task {cls.name!r} has no Hugging Face counterpart to export to; --mode=export '
          f'serves {", ".join(exporters) or "no task"}'
          + (f'. {cls.export_hint}' if cls.export_hint else ''))
