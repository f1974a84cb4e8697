"""Evaluators chosen by config: the task's own list by default, any subset or added
entry by eval.evaluators, and clear errors for names that do not fit."""
import json

import pytest

from conftest import launch
from research import config as config_lib, evaluators, tasks
from research.errors import UserError

DATES = 'configs/dates.py'


def _results(workdir):
  return json.loads((workdir / 'results.json').read_text())


def _metrics(results):
  return {k for k in results if k.startswith(('validation/', 'test/'))}


def test_every_task_lists_evaluators_that_exist_and_fit_it():
  tasks.validate(config_lib.load_config_file(DATES, 'tiny'))  # imports every task.
  assert set(tasks.TASKS) >= {'translation', 'language_model', 'word2vec', 'glove', 'popcorn',
                              'regression'}
  for cls in tasks.TASKS.values():
    if not cls.__module__.startswith('research.'):
      continue  # a task a test defines (it brings its own evaluate).
    assert cls.evaluators and set(cls.evaluators) <= set(evaluators.available()), cls.name
    for name in cls.evaluators:
      assert hasattr(cls, evaluators._module(name).NEEDS), (cls.name, name)  # pylint: disable=protected-access


def test_a_subset_and_a_split_restricted_entry_change_only_their_keys(tiny_run, tmp_path):
  full = _results(tiny_run[0])  # the default list, shared with other tests.
  assert {'test/exact_match', 'test/token_accuracy', 'test/truncated',
          'test/perplexity'} <= _metrics(full)
  # From the command line: a name, and a dict with the splits it runs on.
  proc = launch(f'--config={DATES}:tiny', f'--workdir={tmp_path / "part"}',
                "--config.eval.evaluators=('decoding', {'name': 'perplexity', 'splits': ('test',)})")
  assert proc.returncode == 0, proc.stderr[-2000:]
  part = _results(tmp_path / 'part')
  assert 'test/perplexity' in part and 'validation/perplexity' not in part
  assert _metrics(part) == _metrics(full) - {'validation/perplexity'}
  for key in _metrics(part):  # the same training, the same numbers.
    assert part[key] == pytest.approx(full[key], rel=1e-6), key
  assert part['params_sha256'] == full['params_sha256']


@pytest.mark.parametrize('entries, says', [
    (('nope',), "unknown evaluator 'nope'; available: analogy"),
    (('analogy',), 'analogy reads vectors, which task'),
    (({'splits': ('test',)},), 'names no evaluator'),
])
def test_an_evaluator_that_does_not_fit_is_refused_before_any_work(entries, says):
  config = config_lib.load_config_file(DATES, 'tiny')
  config.eval.evaluators = entries
  with pytest.raises(UserError, match=says.replace('(', r'\(')):
    tasks.validate(config)
