"""Tasks tie a dataset and a model to the shared loop; `config.task` picks one.

A task provides, as pure functions where it matters:
  init(rng) -> params
  loss(params, batch, rng) -> (loss_sum, weight_sum, metric_sums)
  train_batch(step) -> dict of numpy arrays (this process's rows of global batch `step`)
  evaluate(params, split) -> dict of floats
  predict(params, lines) -> list of strings
  write_artifacts(params, workdir) -> plots and samples at the end of a run
  units(batch) -> {'examples': n, 'tokens': n} for benchmarks
"""
from research.errors import UserError


def build(config, runtime):
  from research.tasks import embeddings, translation
  tasks = {'translation': translation.TranslationTask, 'word2vec': embeddings.Word2VecTask,
           'glove': embeddings.GloVeTask}
  if config.task not in tasks:
    raise UserError(f'unknown task {config.task!r}; known: {", ".join(sorted(tasks))}')
  return tasks[config.task](config, runtime)
