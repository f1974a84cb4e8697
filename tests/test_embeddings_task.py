"""word2vec through the shared loop: a tiny corpus end to end, exact resume,
device-count independence, queries and bad input."""
import json
import os
import random

import jax
import numpy as np
import pytest

from conftest import ROOT
from research import config as config_lib, metric_log, train, word_vectors
from research.errors import UserError
from research.tasks import Rejected

PAIRS = [('king', 'queen'), ('man', 'woman'), ('boy', 'girl'), ('father', 'mother')]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('w2v_data')
  r = random.Random(0)
  lines = []
  for _ in range(300):
    he, she = r.choice(PAIRS)
    lines.append(f'the {he} is a male and the {she} is a female {r.choice(["now", "here"])}')
  (root / 'corpus.txt').write_text('\n'.join(lines) + '\n')
  (root / 'eval').mkdir()
  (root / 'eval' / 'questions-words.txt').write_text(
      ': family\nking queen man woman\nboy girl father mother\nson daughter king queen\n')
  (root / 'eval' / 'wordsim353.tsv').write_text('# a\n# b\nking\tqueen\t8\nman\tnow\t1\n'
                                                'boy\tgirl\t8\nfather\there\t1\n')
  return root


def _config(data, **overrides):
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs/word2vec.py'), 'tiny')
  config.data.path = str(data / 'corpus.txt')
  config.data.eval_dir = str(data / 'eval')
  config.data.sample = 0.0
  for key, value in overrides.items():
    section, name = key.split('__')
    config[section][name] = value
  return config


def _run(data, workdir, devices=None, **overrides):
  results = train.train_and_evaluate(_config(data, **overrides), str(workdir),
                                     devices=devices or jax.devices()[:1])
  return results


def test_tiny_run_learns_evaluates_and_writes_vectors(data, tmp_path):
  results = _run(data, tmp_path, optimizer__learning_rate=0.05, data__epochs=8)
  assert results['analogy/answered'] == 2 and results['analogy/oov'] == 1
  assert results['similarity/ws353_oov'] == 0
  for key in ('analogy/3cosadd', 'analogy/3cosmul', 'analogy/family/3cosadd',
              'similarity/ws353', 'params_sha256'):
    assert key in results
  losses = [r['train/loss'] for r in metric_log.read(tmp_path / 'metrics.jsonl') if 'train/loss' in r]
  assert len(losses) > 4 and losses[-1] < losses[0] - 0.2  # it learns the co-occurrences.
  assert (tmp_path / 'plots' / 'word_pairs_pca.png').stat().st_size > 1000  # king/queen ...
  wv = word_vectors.load(str(tmp_path / 'vectors.bin'))
  assert wv.words[0] == 'the' and wv.vectors.shape == (len(wv.words), 8)
  text = word_vectors.load(str(tmp_path / 'vectors.txt'))
  np.testing.assert_allclose(text.vectors, wv.vectors, atol=1e-5)
  # Words of a sentence end up closer than words never seen together.
  assert wv.nearest(['king'], topn=len(wv.words) - 1)[-1][0] not in ('queen', 'male', 'female')
  answers = train.predict(_config(data), str(tmp_path), ['king', 'king - man + woman', 'zebra'])
  assert answers[0].count(',') == 9 and not answers[0].startswith('king ')
  assert answers[1] and 'king' not in answers[1].split(', ')[0]
  assert answers[2] == 'not in the vocabulary: zebra' and isinstance(answers[2], Rejected)


def test_resume_from_an_earlier_checkpoint_is_bit_exact(data, tmp_path):
  first = _run(data, tmp_path)
  steps = sorted(int(p) for p in os.listdir(tmp_path / 'checkpoints') if p.isdigit())
  assert len(steps) == 3 and steps[-1] == first['step']
  for step in steps[1:]:  # back to the oldest kept checkpoint, mid-run.
    for root, dirs, files in os.walk(tmp_path / 'checkpoints' / str(step), topdown=False):
      for name in files:
        os.remove(os.path.join(root, name))
      os.rmdir(root)
  os.remove(tmp_path / 'results.json')
  again = _run(data, tmp_path)
  assert again['params_sha256'] == first['params_sha256']


@pytest.mark.parametrize('negative', [5, 0])  # negative sampling; hierarchical softmax.
def test_four_devices_give_the_one_device_result(data, tmp_path, negative):
  assert jax.device_count() == 4
  one = _run(data, tmp_path / 'one', data__epochs=1, model__negative=negative)
  four = _run(data, tmp_path / 'four', devices=jax.devices(), data__epochs=1,
              model__negative=negative)
  a = word_vectors.load(str(tmp_path / 'one' / 'vectors.bin')).vectors
  b = word_vectors.load(str(tmp_path / 'four' / 'vectors.bin')).vectors
  np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)  # summation order only.
  assert json.loads((tmp_path / 'one' / 'results.json').read_text())['step'] == one['step'] == four['step']


def test_online_training_grows_the_vocabulary_and_keeps_old_rows(data, tmp_path):
  _run(data, tmp_path / 'old', data__epochs=1)
  (tmp_path / 'more.txt').write_text('the prince is a male and the princess is a female\n' * 20)
  _run(data, tmp_path / 'new', data__path=str(tmp_path / 'more.txt'), data__epochs=1,
       data__update_from=str(tmp_path / 'old'))
  old = word_vectors.load(str(tmp_path / 'old' / 'vectors.bin'))
  new = word_vectors.load(str(tmp_path / 'new' / 'vectors.bin'))
  assert new.words[:len(old.words)] == old.words
  assert set(new.words[len(old.words):]) == {'prince', 'princess'}
  for word in ('king', 'queen', 'now'):  # not in the new text: their vectors stay.
    np.testing.assert_array_equal(new.vectors[new.index[word]], old.vectors[old.index[word]])
  assert not np.allclose(new.vectors[new.index['male']], old.vectors[old.index['male']])
  with pytest.raises(UserError, match='model.dim is 16'):
    _run(data, tmp_path / 'c', data__update_from=str(tmp_path / 'old'), model__dim=16)


def test_bad_corpora_and_settings_are_clear_errors(data, tmp_path):
  (tmp_path / 'empty.txt').write_text('\n \n')
  with pytest.raises(UserError, match='is empty'):
    _run(data, tmp_path / 'a', data__path=str(tmp_path / 'empty.txt'))
  with pytest.raises(UserError, match='no word occurs min_count=1000 times'):
    _run(data, tmp_path / 'b', data__min_count=1000)
  with pytest.raises(UserError, match='parallel_segments=3 must divide'):
    _run(data, tmp_path / 'c', data__parallel_segments=3)
  with pytest.raises(UserError, match="data.eval_dir .* does not exist"):
    _run(data, tmp_path / 'd', data__eval_dir=str(tmp_path / 'nowhere'))
  with pytest.raises(UserError, match='model.shared_negatives=0'):
    _run(data, tmp_path / 'e', model__shared_negatives=0)


def test_glove_trains_evaluates_and_saves_w_plus_w_tilde(data, tmp_path):
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs/glove.py'), 'tiny')
  config.data.path, config.data.eval_dir = str(data / 'corpus.txt'), str(data / 'eval')
  config.data.epochs = 6
  results = train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
  assert results['analogy/answered'] == 2 and 'similarity/ws353' in results
  losses = [r['train/loss'] for r in metric_log.read(tmp_path / 'metrics.jsonl') if 'train/loss' in r]
  assert losses[-1] < 0.5 * losses[0]
  glove = word_vectors.load(str(tmp_path / 'vectors.glove.txt'))
  w2v = word_vectors.load(str(tmp_path / 'vectors.bin'))
  assert glove.words == w2v.words and glove.words[0] == 'the'
  np.testing.assert_allclose(glove.vectors, w2v.vectors, atol=1e-5)
  four = train.train_and_evaluate(config, str(tmp_path / 'four'), devices=jax.devices())
  np.testing.assert_allclose(word_vectors.load(str(tmp_path / 'four' / 'vectors.bin')).vectors,
                             w2v.vectors, rtol=1e-4, atol=1e-5)
  assert four['step'] == results['step']
  config.data.round = 24
  with pytest.raises(UserError, match='data.round=24 must divide train.batch_size=64'):
    train.train_and_evaluate(config, str(tmp_path / 'bad'), devices=jax.devices()[:1])
