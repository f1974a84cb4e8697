"""Models, registered by name: a task builds the one `config.model.name` names.

A model module registers its models with `@register(name, task)` when it is
imported (each task imports the modules of its models), and a task asks for
one with `get(config.model.name, task)`. `Task.validate` checks the name
before any data loads, naming the choices when it is missing or not one of
the task's models.
"""
from research.errors import UserError

MODELS = {}  # name -> (task, model)


def register(name: str, task: str):
  def add(model):
    MODELS[name] = (task, model)
    return model
  return add


def names(task: str) -> list[str]:
  """The registered models of a task (none for a task that fits without one)."""
  return sorted(n for n, (t, _) in MODELS.items() if t == task)


def get(name: str | None, task: str):
  known = names(task)
  if name is None:
    raise UserError(f'the config has no model.name; the {task} task\'s models: ' + ', '.join(known))
  if MODELS.get(name, (None,))[0] != task:
    raise UserError(f'model.name={name!r} is not a model of the {task} task; use '
                    + ', '.join(known))
  return MODELS[name][1]
