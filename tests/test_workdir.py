"""One workdir, one writer; config changes on resume; a save that fails (a full disk)."""
import errno
import json
import logging
import os
import socket
import threading

import orbax.checkpoint as ocp
import pytest

from conftest import ROOT
from research import config as config_lib, train, workdir as workdir_lib
from research.errors import UserError


def _tiny(**overrides):
  config = config_lib.load_config_file(os.path.join(ROOT, 'configs/dates.py'), 'tiny')
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


def test_a_second_run_on_a_held_workdir_names_the_first(tmp_path):
  with workdir_lib.Lock(str(tmp_path)):
    with pytest.raises(UserError, match=f'in use by another run .*PID {os.getpid()}'):
      train.train_and_evaluate(_tiny(**{'train.steps': 2}), str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()  # it stopped before any work.
  assert (tmp_path / workdir_lib.LOCK).read_text() == ''  # released.


def test_a_lock_left_by_a_dead_run_is_taken_over_with_a_warning(tmp_path, caplog):
  (tmp_path / workdir_lib.LOCK).write_text(json.dumps(
      {'host': socket.gethostname(), 'pid': 2 ** 22 + 12345, 'started': '2026-01-01 00:00:00'}))
  with caplog.at_level(logging.WARNING):
    with workdir_lib.Lock(str(tmp_path)) as lock:
      held = json.loads((tmp_path / workdir_lib.LOCK).read_text())
      assert held['pid'] == os.getpid() and lock.fd is not None
  assert 'took over the workdir lock' in caplog.text and 'started 2026-01-01' in caplog.text


def test_resuming_with_changed_keys_logs_keeps_and_lists_them(tmp_path, caplog):
  workdir = str(tmp_path)
  train.train_and_evaluate(_tiny(**{'train.steps': 4}), workdir)
  with caplog.at_level(logging.WARNING):
    results = train.train_and_evaluate(
        _tiny(**{'train.steps': 6, 'optimizer.learning_rate': 0.002}), workdir)
  assert 'resuming at step 4 with 2 changed config key(s)' in caplog.text
  assert 'optimizer.learning_rate' in caplog.text
  kept = json.loads((tmp_path / 'config.4.json').read_text())
  assert kept['train']['steps'] == 4 and json.loads(
      (tmp_path / 'config.json').read_text())['train']['steps'] == 6
  changes = {c['key']: c for c in results['config_changes']}
  assert set(changes) == {'optimizer.learning_rate', 'train.steps'}
  assert changes['train.steps'] == {'step': 4, 'key': 'train.steps', 'old': 4, 'new': 6}
  assert json.loads((tmp_path / 'results.json').read_text())['config_changes'] == \
      results['config_changes']


def test_a_failed_save_keeps_the_previous_checkpoint_and_a_rerun_resumes(tiny_run, tmp_path,
                                                                          monkeypatch):
  workdir = str(tmp_path)
  save = ocp.StandardCheckpointHandler.async_save

  def full_disk(self, directory, *args, **kwargs):
    if '/4.orbax' in str(directory):  # mid-write of step 4's files.
      os.makedirs(str(directory), exist_ok=True)
      with open(os.path.join(str(directory), 'partial'), 'w') as f:
        f.write('half a checkpoint')
      raise OSError(errno.ENOSPC, 'No space left on device')
    return save(self, directory, *args, **kwargs)

  monkeypatch.setattr(ocp.StandardCheckpointHandler, 'async_save', full_disk)
  before = set(threading.enumerate())
  with pytest.raises(UserError) as failure:
    train.train_and_evaluate(_tiny(), workdir)
  message = str(failure.value)
  assert '\n' not in message and 'No space left on device' in message
  assert 'of step 4' in message and 'the checkpoint of step 2 is kept' in message
  assert not (tmp_path / 'results.json').exists()
  # No orbax thread is left waiting for the step directory (exit would wait for it).
  waiting = [t for t in threading.enumerate() if 'target_setting' in t.name
             and t not in before]
  for thread in waiting:  # threading's own join: orbax's raises for a cancelled thread.
    threading.Thread.join(thread, timeout=30)
  assert not [t for t in waiting if t.is_alive()]
  monkeypatch.setattr(ocp.StandardCheckpointHandler, 'async_save', save)
  results = train.train_and_evaluate(_tiny(), workdir)  # resumes from step 2.
  expected = json.loads((tiny_run[0] / 'results.json').read_text())['params_sha256']
  assert results['params_sha256'] == expected
  steps = [json.loads(l)['step'] for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()
           if 'train/loss' in l]
  assert steps == [2, 4, 6]  # the log reads as one run.
