"""The task protocol: a task needs only its required hooks, tasks register by name,
model.name names a registered model, the config is read and never written, and
regression's float64 stays inside its own run."""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT
from research import config as config_lib, models, tasks, train
from research.errors import UserError


@tasks.register('toy_regression')
class ToyTask(tasks.Task):
  """Only the required hooks: y = 3 x - 1 by gradient descent on a squared loss."""

  def init(self, rng):
    return {'w': jnp.zeros(()), 'b': jnp.zeros(())}

  def loss(self, params, batch, rng):
    err = params['w'] * batch['x'] + params['b'] - batch['y']
    return (err ** 2).sum(), jnp.asarray(err.size, jnp.float32), {}

  def train_batch(self, step):
    x = np.random.default_rng([self.config.seed, step]).normal(size=8).astype(np.float32)
    return {'x': x, 'y': 3 * x - 1}

  def evaluate(self, params, split):
    return {'w': float(params['w']), 'b': float(params['b'])}


def toy_config():
  c = config_lib.base_config()
  c.task = 'toy_regression'
  c.optimizer.update(name='sgd', momentum=0.0, learning_rate=0.1, schedule='constant')
  c.train.update(steps=200, batch_size=8, log_every=100)
  c.eval.every = c.checkpoint.every = 200
  c.bench.matmul_size = 0
  return c


def test_a_task_with_only_the_required_hooks_runs_every_mode(tmp_path):
  results = train.train_and_evaluate(toy_config(), str(tmp_path))
  assert results['test/w'] == pytest.approx(3.0, abs=1e-3)
  assert results['validation/b'] == pytest.approx(-1.0, abs=1e-3)
  assert train.evaluate(toy_config(), str(tmp_path))['test/w'] == results['test/w']
  row = train.benchmark(toy_config())
  assert row['examples_per_second'] > 0 and 'tokens_per_second' not in row
  with pytest.raises(UserError, match="task 'toy_regression' has no --mode=predict"):
    train.predict(toy_config(), str(tmp_path), ['1'])


def test_build_names_the_registered_tasks():
  config = toy_config()
  config.task = 'toy_regresion'
  with pytest.raises(UserError, match="unknown task 'toy_regresion'; known: .*toy_regression"):
    tasks.build(config, None)
  assert {'translation', 'word2vec', 'glove', 'popcorn', 'regression',
          'language_model'} <= set(tasks.TASKS)


def _every_preset():
  for path in sorted(glob.glob(str(ROOT / 'configs' / '*.py'))):
    module = config_lib.load_config_module(path)
    presets = getattr(module, 'PRESETS', ()) + ('tiny',)
    for preset in presets:
      try:
        yield os.path.basename(path), preset, module.get_config(preset)
      except ValueError:  # a file without a tiny preset.
        continue


def test_model_name_always_names_a_registered_model_of_its_task():
  seen = set()
  for name, preset, config in _every_preset():
    tasks.validate(config)  # imports every task's module, registering their models.
    if 'name' not in config.model:
      assert config.task == 'regression', (name, preset)  # its estimator picks the fit.
      continue
    models.get(config.model.name, config.task)  # raises for any other name.
    seen.add(config.model.name)
  assert seen == {'rnn_attention', 'rnn_seq2seq', 'transformer', 'word2vec', 'glove',
                  'logistic_regression', 'sentiment_encoder', 'transformer_lm'}
  with pytest.raises(UserError, match="model.name='word2vec' is not a model of the translation"):
    models.get('word2vec', 'translation')
  assert 'name' not in config_lib.base_config().model  # the schema names no model.
  with pytest.raises(UserError, match="no model.name; the glove task's models: glove"):
    models.get(None, 'glove')


def test_tasks_that_count_in_epochs_never_write_the_config(tmp_path):
  from test_popcorn import write_tsv_layout  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file(str(ROOT / 'configs/popcorn.py'), 'tiny')
  config.data.path = str(write_tsv_layout(tmp_path / 'imdb'))
  assert config.train.steps == 0
  exp = train.Experiment(config, '')
  assert config.train.steps == 0 and exp.total_steps == exp.task.num_steps() > 0


def test_float64_is_scoped_to_the_regression_run(tmp_path):
  config = config_lib.load_config_file(str(ROOT / 'configs/regression.py'), 'nist')
  config.data.synthetic = 'nist:Longley'
  results = train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  assert results['nist/min_significant_digits'] > 13  # float64 inside the run,
  assert not jax.config.jax_enable_x64 and jnp.ones(1).dtype == jnp.float32  # not after it.
  again = train.evaluate(config, str(tmp_path), devices=jax.devices()[:1])  # restores float64.
  assert again['train/r2'] == results['train/r2']
