"""Every task family runs to completion with its parameters really sharded over 4
CPU devices: under parallel.mode=fsdp, and the Transformer families also on a 2-D
mesh (data=2, model=2). A run trains, evaluates, writes results, plots and
artifacts, then eval and predict read its workdir; its losses equal the
unsharded (mesh) run's."""
import json
import os

import jax
import numpy as np
import pytest

from multihost_worker import configured
from research import metric_log, train
from research.experiment import Experiment

FSDP = {'parallel.mode': 'fsdp', 'parallel.fsdp_min_size': 16}
TWO_D = {'parallel.mesh_shape': 'data=2,model=2'}
FEW = {'train.log_every': 1, 'eval.every': 2, 'checkpoint.every': 1000}
LINES = ['tuesday 3 march 2015', 'the king is a man', '1.5,2,3', '']


def _families(root):
  """{name: (config file, preset, overrides)}: shapes that every layout divides, so
  the embeddings, attention heads and feed-forward leaves split."""
  from test_popcorn import write_tsv_layout  # pylint: disable=g-import-not-at-top
  corpus = root / 'corpus.txt'
  corpus.write_text('\n'.join(f'the king is a man and the queen is a woman {i % 7}'
                               for i in range(120)) + '\n')
  imdb = str(write_tsv_layout(root / 'imdb'))
  transformer = {'data.vocab_size': 40, 'data.train_size': 64, 'data.max_source_len': 8,
                 'data.max_target_len': 8, 'model.model_dim': 16, 'model.ff_dim': 32,
                 'model.num_heads': 2, 'model.num_layers': 1, 'train.batch_size': 16,
                 'eval.beam_size': 1, 'eval.num_samples': 2, 'eval.batch_size': 64}
  return {
      'rnn': ('configs/dates.py', 'tiny', {'eval.num_samples': 2}),
      'transformer': ('configs/transformer.py', 'bench', transformer),
      'word2vec': ('configs/word2vec.py', 'tiny', {'data.path': str(corpus)}),
      'glove': ('configs/glove.py', 'tiny', {'data.path': str(corpus)}),
      'popcorn': ('configs/popcorn.py', 'tiny', {'data.path': imdb, 'data.max_features': 64}),
      'sentiment_encoder': ('configs/popcorn.py', 'tiny',
                            {'data.path': imdb, 'data.features': 'tokens',
                             'model.name': 'sentiment_encoder'}),
      'regression': ('configs/regression.py', 'tiny', {'data.p': 16}),
      'language_model': ('configs/lm.py', 'tiny', {'data.path': str(corpus),
                                                   'eval.num_samples': 2}),
  }


TRANSFORMERS = ('transformer', 'sentiment_encoder', 'language_model')
RUNS = ([(name, 'fsdp') for name in ('rnn', 'transformer', 'word2vec', 'glove', 'popcorn',
                                      'sentiment_encoder', 'regression', 'language_model')]
        + [(name, '2d') for name in TRANSFORMERS])


@pytest.fixture(scope='module')
def families(tmp_path_factory):
  return _families(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='module')
def unsharded(tmp_path_factory, families):
  """The mesh run of a family (made once, on first use): (workdir, results)."""
  root, done = tmp_path_factory.mktemp('mesh'), {}

  def run(name):
    if name not in done:
      workdir = str(root / name)
      done[name] = workdir, train.train_and_evaluate(_config(families, name, {}), workdir)
    return done[name]
  return run


def _config(families, name, layout):
  path, preset, overrides = families[name]
  config = configured(dict(config=path, preset=preset,
                           overrides={'train.steps': 4, **FEW, **overrides, **layout}))
  config.name = name
  return config


def split_leaves(config) -> list[str]:
  """The parameters whose addressable shard is smaller than the leaf."""
  exp = Experiment(config, '')
  with exp.task.scope():
    params = exp.abstract_state().params
  return [jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_leaves_with_path(params)
          if leaf.sharding.shard_shape(leaf.shape) != leaf.shape]


def _losses(workdir):
  return [r['train/loss'] for r in metric_log.read(os.path.join(workdir, 'metrics.jsonl'))
          if 'train/loss' in r]


def _files(workdir):
  """The plots and artifacts a run wrote (not its checkpoints or logs)."""
  skip = ('checkpoints', 'tensorboard', 'averaged')
  return sorted(os.path.relpath(os.path.join(d, f), workdir)
                for d, dirs, files in os.walk(workdir) for f in files
                if not os.path.relpath(d, workdir).startswith(skip))


@pytest.mark.parametrize('name, layout', RUNS)
def test_a_sharded_run_finishes_like_the_unsharded_one(name, layout, families, unsharded,
                                                       tmp_path):
  config = _config(families, name, FSDP if layout == 'fsdp' else TWO_D)
  split = split_leaves(config)
  assert split, f'{name} under {layout}: no parameter is split'
  if name in TRANSFORMERS:  # heads and feed-forward units, and fsdp's embeddings.
    assert any('attention' in p for p in split) and any('feed_forward' in p for p in split), split
    if layout == 'fsdp':
      assert any('embed' in p for p in split), split

  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, workdir)
  mesh_dir, mesh_results = unsharded(name)
  np.testing.assert_allclose(_losses(workdir), _losses(mesh_dir), rtol=1e-5)
  assert len(_losses(workdir)) == 4
  for key, value in mesh_results.items():
    if isinstance(value, float) and not key.startswith('time/') and key != 'wall_seconds':
      assert results[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
  saved = json.loads(open(os.path.join(workdir, 'results.json')).read())
  assert saved['params_sha256'] == results['params_sha256']
  assert 'plots/metrics.png' in _files(workdir)
  assert _files(workdir) == _files(mesh_dir)  # every plot and artifact, under any layout.
  if name == 'transformer':
    assert any(f.startswith('plots/attention_layers/') for f in _files(workdir))

  evaluated = train.evaluate(config, workdir)
  for key, value in evaluated.items():
    if isinstance(value, float):
      assert value == pytest.approx(results[key], rel=1e-5, abs=1e-7), key
  answers = train.predict(config, workdir, LINES)
  assert len(answers) == len(LINES)
  assert answers == train.predict(_config(families, name, {}), mesh_dir, LINES)
