"""Sweeps and paper reproduction through launch.py."""
import csv
import json
import os
import shutil
import sys

import pytest

from conftest import ROOT, launch
from research import sweep
from research.errors import UserError


def test_product_zip_chain_and_names():
  a = sweep.axis('model.decoder_dim', [8, 16])
  b = sweep.axis('seed', [0, 1])
  assert sweep.product(a, b) == [
      {'model.decoder_dim': 8, 'seed': 0}, {'model.decoder_dim': 8, 'seed': 1},
      {'model.decoder_dim': 16, 'seed': 0}, {'model.decoder_dim': 16, 'seed': 1}]
  assert sweep.zip(a, b) == [{'model.decoder_dim': 8, 'seed': 0},
                             {'model.decoder_dim': 16, 'seed': 1}]
  assert sweep.chain(a, b) == a + b
  with pytest.raises(ValueError, match='same length|one length'):
    sweep.zip(a, sweep.axis('seed', [0]))
  with pytest.raises(ValueError, match='same key twice'):
    sweep.product(a, a)
  assert sweep.point_name({'model.decoder_dim': 8, 'seed': 1}) == 'model.decoder_dim=8,seed=1'
  assert sweep.point_name({'optimizer.schedule': 'a/b c'}) == 'optimizer.schedule=a_b_c'
  assert sweep.point_name({}) == 'base'


def _config_file(tmp_path, body: str):
  """A config file that reuses configs/dates.py:tiny and adds `body`."""
  path = tmp_path / 'exp.py'
  path.write_text(
      'import runpy\n'
      f'_dates = runpy.run_path({str(ROOT / "configs" / "dates.py")!r})\n'
      'def get_config(preset=""):\n'
      '  c = _dates["get_config"]("tiny")\n'
      '  c.train.steps = 4\n'
      '  return c\n' + body)
  return path


def test_sweep_runs_points_records_failures_and_resumes(tmp_path):
  config = _config_file(tmp_path, (
      'def get_sweep(preset=""):\n'
      '  return [{"model.decoder_dim": 8}, {"train.batch_size": 6}, {"model.decoder_dim": 12}]\n'))
  workdir = tmp_path / 'sweep'
  proc = launch(f'--config={config}', '--sweep', '--sweep_parallel=2', f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'sweep: 2 done, 1 failed, 0 remaining' in proc.stdout
  assert 'ETA' in proc.stdout
  rows = {r['point']: r for r in csv.DictReader(open(workdir / 'sweep.csv'))}
  assert rows['model.decoder_dim=8']['status'] == 'done'
  assert len(rows['model.decoder_dim=12']['params_sha256']) == 64
  assert rows['model.decoder_dim=8']['params_sha256'] != rows['model.decoder_dim=12']['params_sha256']
  assert float(rows['model.decoder_dim=12']['wall_seconds']) > 0
  assert 'test/exact_match' in rows['model.decoder_dim=8']
  failed = rows['train.batch_size=6']
  assert failed['status'] == 'failed' and 'does not divide evenly over' in failed['error']
  assert (workdir / 'train.batch_size=6' / 'error.txt').exists()
  assert '| model.decoder_dim=8 | done |' in (workdir / 'sweep.md').read_text()
  assert (workdir / 'sweep.png').stat().st_size > 1000

  # Rerun: finished points are skipped; a point without results resumes from its checkpoint.
  (workdir / 'model.decoder_dim=12' / 'results.json').unlink()
  proc = launch(f'--config={config}', '--sweep', f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'sweep: 1 finished point(s) skipped' in proc.stdout
  log = (workdir / 'model.decoder_dim=12' / 'log.txt').read_text()
  assert 'restored checkpoint at step 4' in log
  rows2 = {r['point']: r for r in csv.DictReader(open(workdir / 'sweep.csv'))}
  assert rows2['model.decoder_dim=12']['params_sha256'] == \
      rows['model.decoder_dim=12']['params_sha256']

  # The same sweep as a scheduler runs it: points by index, in separate processes
  # (one as a SLURM array task), the last one as if run on another machine; then
  # collected into the table --sweep wrote.
  parts = tmp_path / 'parts'
  proc = launch(f'--config={config}', '--sweep_point=0', f'--workdir={parts}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert not (parts / 'sweep.csv').exists()  # one point writes no table.
  # A point by index run again resumes from its checkpoint, as --sweep's points do.
  first = parts / 'model.decoder_dim=8'
  (first / 'results.json').unlink()
  proc = launch(f'--config={config}', '--sweep_point=0', f'--workdir={parts}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'restored checkpoint at step 4' in (first / 'log.txt').read_text()
  env = {**os.environ, 'SLURM_ARRAY_TASK_ID': '1'}  # as `sbatch --array=0-2` task 1.
  proc = launch(f'--config={config}', '--sweep_point=auto', f'--workdir={parts}', env=env)
  assert proc.returncode != 0 and 'point 1 (train.batch_size=6) failed' in proc.stdout
  shutil.copytree(workdir / 'model.decoder_dim=12', parts / 'model.decoder_dim=12')
  proc = launch(f'--config={config}', '--sweep_collect', f'--workdir={parts}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'sweep: 2 done, 1 failed, 0 not run' in proc.stdout

  def table(path):
    return [{k: v for k, v in row.items() if k != 'wall_seconds' and not k.startswith('time/')}
            for row in csv.DictReader(open(path / 'sweep.csv'))]  # all but the timings.
  assert table(parts) == table(workdir)
  assert (parts / 'sweep.md').exists() and (parts / 'sweep.png').exists()


def test_a_point_number_comes_from_the_flag_or_a_slurm_array_task():
  assert sweep.point_index('2', 3) == 2
  assert sweep.point_index('auto', 3, {'SLURM_ARRAY_TASK_ID': '1'}) == 1
  with pytest.raises(UserError, match='SLURM_ARRAY_TASK_ID, which is not set'):
    sweep.point_index('auto', 3, {})
  with pytest.raises(UserError, match='has 3 points, 0..2'):
    sweep.point_index('3', 3)
  with pytest.raises(UserError, match='give a point number'):
    sweep.point_index('first', 3)


def test_sweep_commands_print_one_line_per_point(tmp_path):
  proc = launch('--config=configs/dates.py:tiny', '--sweep_commands', f'--workdir={tmp_path}',
                '--config.train.steps=3')
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 2
  for line, dim in zip(lines, (8, 12)):
    assert line.startswith(sys.executable) and 'launch.py' in line
    assert f'--workdir={tmp_path}/model.decoder_dim={dim}' in line
    assert line.endswith(f'--config.train.steps=3 --config.model.decoder_dim={dim}')


def test_sweep_with_an_unknown_key_is_a_clear_error(tmp_path):
  config = _config_file(tmp_path, 'def get_sweep(preset=""):\n  return [{"model.decodr_dim": 8}]\n')
  proc = launch(f'--config={config}', '--sweep', f'--workdir={tmp_path / "w"}')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith('error: sweep point')
  assert 'model.decoder_dim' in proc.stderr


def test_reproduce_writes_a_report_beside_the_paper(tmp_path):
  config = _config_file(tmp_path, (
      'PAPER = dict(title="A Tiny Paper", authors="Doe", year=2024, where="Table 9",\n'
      '             results=[dict(label="ours vs theirs", metric="test/token_accuracy",\n'
      '                           paper=50.0, scale=100)],\n'
      '             notes="Tiny on purpose.")\n'))
  workdir = tmp_path / 'repro'
  proc = launch(f'--reproduce={config}', f'--workdir={workdir}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = (workdir / 'report.md').read_text()
  ours = json.loads((workdir / 'base' / 'results.json').read_text())['test/token_accuracy'] * 100
  assert '# Reproduction: A Tiny Paper' in report and 'Table 9' in report
  assert f'| ours vs theirs | test/token_accuracy | 50 | {ours:.4g} | {ours - 50:+.4g} |' in report
  assert 'Tiny on purpose.' in report


def test_reproduce_unknown_name_is_a_clear_error():
  proc = launch('--reproduce=no_such_paper')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
  assert "no paper config 'no_such_paper'" in proc.stderr


def test_report_draws_bucket_curves_and_reads_later_evaluations(tmp_path):
  from research import reproduce  # pylint: disable=g-import-not-at-top
  for point, bleu in (('model.rnn=lstm', 10.0), ('base', 30.0)):
    (tmp_path / point).mkdir()
    (tmp_path / point / 'results.json').write_text(json.dumps({'step': 9, 'test/bleu': bleu}))
    (tmp_path / point / 'eval_results.json').write_text(json.dumps(
        {'step': 9, 'test/bleu': 0.0, 'test/bleu_len_1-7': bleu + 5, 'test/bleu_len_8+': bleu - 5}))
  stale = tmp_path / 'model.rnn=gru'  # evaluated at another step: not used.
  stale.mkdir()
  (stale / 'results.json').write_text(json.dumps({'step': 9}))
  (stale / 'eval_results.json').write_text(json.dumps({'step': 5, 'test/bleu': 1.0}))
  paper = dict(title='T', results=[
      dict(label='lstm', point={'model.rnn': 'lstm'}, metric='test/bleu_len_8+', paper=4.0),
      dict(label='attention', point={}, metric='test/bleu', paper=28.0),
      dict(label='gru', point={'model.rnn': 'gru'}, metric='test/bleu', paper=20.0)],
      curves=[dict(prefix='test/bleu_len_', file='by_length.png', xlabel='words', ylabel='BLEU')])
  report = open(reproduce.write_report(str(tmp_path), paper, 'paper.py')).read()
  assert '| lstm | test/bleu_len_8+ | 4 | 5 | +1 |' in report  # from eval_results.json.
  assert '| attention | test/bleu | 28 | 30 | +2 |' in report  # training's value is kept.
  assert '| gru | test/bleu | 20 | no test/bleu in results.json |  |' in report
  assert (tmp_path / 'by_length.png').stat().st_size > 1000
  assert '![by_length.png](by_length.png)' in report


def test_seq2seq_paper_points_are_exactly_the_presets():
  from research import config as config_lib  # pylint: disable=g-import-not-at-top
  paper = config_lib.load_config_module(str(ROOT / 'configs/papers/seq2seq_multi30k.py'))
  seq2seq = config_lib.load_config_module(str(ROOT / 'configs/seq2seq.py'))
  for point, preset in zip(paper.get_sweep(), ('lstm', 'gru_context', 'bahdanau')):
    config = paper.get_config()
    for key, value in point.items():
      section, name = key.split('.')
      config[section][name] = value
    assert config_lib.to_dict(config) == config_lib.to_dict(seq2seq.get_config(preset)), preset
