"""Tasks tie a dataset and a model to the shared loop; `config.task` picks one.

A task provides, as pure functions where it matters:
  init(rng) -> params
  loss(params, batch, rng) -> (loss_sum, weight_sum, metric_sums)
  train_batch(step) -> dict of numpy arrays (this process's rows of global batch `step`)
  evaluate(params, split) -> dict of floats
  predict(params, lines) -> list of strings
  write_artifacts(params, workdir) -> plots and samples at the end of a run
  units(batch) -> {'examples': n, 'tokens': n} for benchmarks
and optionally, for tasks whose update is not an optax step on a loss
(word2vec's sparse SGD, GloVe's sparse AdaGrad):
  train_step(state, batch, schedule) -> (state, metrics), used instead of loss
  init_opt_state(params) -> the optimizer state the train step keeps
  eval_splits: the splits to evaluate ('' for no split prefix in the metric names)
  final_results(params) -> dict merged into results.json (regression's coefficients)
  benchmark_fields(params, seconds, steps) -> dict added to the benchmark row (fit_seconds)
"""
from research.errors import UserError


def build(config, runtime, workdir: str = ''):
  from research.tasks import embeddings, popcorn, regression, translation
  tasks = {'translation': translation.TranslationTask, 'word2vec': embeddings.Word2VecTask,
           'glove': embeddings.GloVeTask, 'regression': regression.RegressionTask,
           'popcorn': popcorn.PopcornTask}
  if config.task not in tasks:
    raise UserError(f'unknown task {config.task!r}; known: {", ".join(sorted(tasks))}')
  if config.task == 'popcorn':  # it may train word vectors first, in a workdir of their own.
    return popcorn.PopcornTask(config, runtime, workdir)
  return tasks[config.task](config, runtime)
