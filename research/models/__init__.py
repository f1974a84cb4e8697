"""Models, registered by name: a task builds the one `config.model.name` names.

A model module registers its models with `@register(name, task)` when it is
imported (each task imports the modules of its models), and a task asks for
one with `get(config.model.get('name'), task)`, which names the choices when
the name is missing or not one of its models.
"""
from research.errors import UserError

MODELS = {}  # name -> (task, model)


def register(name: str, task: str):
  def add(model):
    MODELS[name] = (task, model)
    return model
  return add


def get(name: str | None, task: str):
  known = sorted(n for n, (t, _) in MODELS.items() if t == task)
  if name is None:
    raise UserError(f'the config has no model.name; the {task} task\'s models: ' + ', '.join(known))
  if MODELS.get(name, (None,))[0] != task:
    raise UserError(f'model.name={name!r} is not a model of the {task} task; use '
                    + ', '.join(known))
  return MODELS[name][1]
