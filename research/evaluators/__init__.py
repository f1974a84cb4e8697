"""Evaluators chosen by config: `eval.evaluators` lists what each evaluation runs.

Each evaluator is one module of this package, named as the evaluator, with

  NEEDS = 'method'                       the task hook it reads (a task without
                                         it is refused before any work)
  evaluate(task, params, split, cache, **settings) -> {metric: value}

An entry of `eval.evaluators` is the evaluator's name, or a dict of its name
(`name`), the splits it runs on (`splits`, default every evaluated split) and
its settings. An empty `eval.evaluators` runs the task's own list
(`Task.evaluators`), which gives results.json its usual keys; the loop prefixes
each key with the split. `cache` lives for one split's evaluation, so that
evaluators reading the same outputs (decoded translations, say) compute them
once. docs/extending.md shows adding one.
"""
import importlib
import os
import pkgutil

from research.errors import UserError


def available() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)]))


def _module(name: str):
  if name not in available():
    raise UserError(f'eval.evaluators: unknown evaluator {name!r}; available: '
                    + ', '.join(available()))
  return importlib.import_module(f'research.evaluators.{name}')


def entries(config, task_class) -> list[tuple]:
  """[(module, splits or None, settings)] of eval.evaluators (or the task's own
  list), each checked against what the task can give it."""
  listed = tuple(config.eval.evaluators) or tuple(task_class.evaluators)
  out = []
  for entry in listed:
    if isinstance(entry, str):
      entry = {'name': entry}
    entry = dict(entry)
    if 'name' not in entry:
      raise UserError(f'eval.evaluators: {entry!r} names no evaluator; give it a "name"')
    name, splits = entry.pop('name'), entry.pop('splits', None)
    module = _module(name)
    if not hasattr(task_class, module.NEEDS):
      raise UserError(f'eval.evaluators: {name} reads {module.NEEDS}, which task '
                      f'{task_class.name!r} does not give; its own evaluators are '
                      + ', '.join(task_class.evaluators))
    out.append((module, None if splits is None else tuple(splits), entry))
  return out


def cached(cache: dict, key: str, make):
  """cache[key], made by make() the first time: outputs several evaluators read."""
  if key not in cache:
    cache[key] = make()
  return cache[key]


def run(listed, task, params, split: str) -> dict:
  """Every listed evaluator's metrics for one split, in the list's order."""
  cache, out = {}, {}
  for module, splits, settings in listed:
    if splits is None or split in splits:
      out.update(module.evaluate(task, params, split, cache, **settings))
  return out
