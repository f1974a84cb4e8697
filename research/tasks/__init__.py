"""Tasks by name: the registry `config.task` picks from.

Tasks by name: `config.task` picks one of the registered tasks, each a subclass
of research/tasks/base.py's `Task` in a module of this package."""
from research.errors import UserError
from research.tasks import base  # noqa: F401
from research.tasks.base import TASKS, Rejected, Task, register  # noqa: F401  (the protocol)

def validate(config) -> type:
  """The registered task class config.task names, after its checks of the config."""
  # Importing a task's module registers it; here, so that importing the protocol
  # alone (research/tasks/base.py) loads no task.
  from research.tasks import embeddings, language_model, popcorn, regression, translation  # noqa: F401
  if config.task not in TASKS:
    raise UserError(f'unknown task {config.task!r}; known: {", ".join(sorted(TASKS))}')
  cls = TASKS[config.task]
  cls.validate(config)
  return cls


def build(config, runtime, workdir: str = '') -> Task:
  """The registered task config.task names, constructed for this config."""
  return validate(config)(config, runtime, workdir)
