"""The default experiment end to end through launch.py, and its CLI contract."""
import json
import math
import shutil
import struct

import pytest

from conftest import launch


def _scalars(path):
  """{tag: [(step, value)]} of a TensorBoard event file (TFRecord framing)."""
  from tensorboardX.proto import event_pb2
  data, at, out = path.read_bytes(), 0, {}
  while at < len(data):
    length = struct.unpack('<Q', data[at:at + 8])[0]
    event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
    at += 16 + length  # length, its crc, the record, its crc.
    for value in event.summary.value:
      out.setdefault(value.tag, []).append((event.step, value.simple_value))
  return out


def test_tiny_run_writes_every_artifact(tiny_run):
  workdir, proc = tiny_run
  records = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  train = [r for r in records if 'train/loss' in r]
  assert [r['step'] for r in train] == [2, 4, 6]
  assert all(math.isfinite(r['train/loss']) and math.isfinite(r['train/grad_norm'])
             for r in train)
  assert any('validation/exact_match' in r for r in records)
  results = json.loads((workdir / 'results.json').read_text())
  assert results['step'] == 6
  assert 0.0 <= results['test/exact_match'] <= 1.0
  assert len(results['params_sha256']) == 64
  # From the process's start to trained, before the final evaluation: inside its lifetime.
  assert 0 < results['time/start_to_trained_seconds'] < proc.seconds
  config = json.loads((workdir / 'config.json').read_text())
  assert config['model']['name'] == 'rnn_attention' and config['train']['steps'] == 6
  events = _scalars(*(workdir / 'tensorboard').glob('events.out.tfevents.*'))
  assert [step for step, _ in events['train/loss']] == [2, 4, 6]
  for (step, value), record in zip(events['train/loss'], train):
    assert value == pytest.approx(record['train/loss'], rel=1e-6)  # stored as float32.
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()
                if p.name.isdigit()) == ['2', '4', '6']
  pngs = sorted(p.name for p in (workdir / 'plots').glob('*.png'))
  assert 'metrics.png' in pngs and sum(p.startswith('attention_test_') for p in pngs) >= 2
  assert 'step 6/6' in proc.stderr and 'ETA' in proc.stderr and 'steps/s' in proc.stderr
  # Throughput in the task's unit and MFU against the measured matmul rate (a CPU).
  assert all(r['train/tokens_per_second'] > 0 and 0 < r['train/mfu'] < 1 for r in train)
  assert 'tokens/s' in proc.stderr and 'MFU' in proc.stderr


def test_rerun_of_a_finished_run_resumes_and_changes_nothing(tiny_run, tmp_path):
  workdir, _ = tiny_run
  copy = tmp_path / 'copy'
  shutil.copytree(workdir, copy)
  before = json.loads((copy / 'results.json').read_text())['params_sha256']
  proc = launch('--config=configs/dates.py:tiny', f'--workdir={copy}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'restored checkpoint at step 6' in proc.stderr and 'already finished' in proc.stderr
  assert json.loads((copy / 'results.json').read_text())['params_sha256'] == before
  steps = [json.loads(l)['step'] for l in (copy / 'metrics.jsonl').read_text().splitlines()]
  assert steps == [json.loads(l)['step']
                   for l in (workdir / 'metrics.jsonl').read_text().splitlines()]


def test_predict_reads_stdin_and_input_file(tiny_run, tmp_path):
  workdir, _ = tiny_run
  proc = launch('--config=configs/dates.py:tiny', f'--workdir={workdir}', '--mode=predict',
                input='3/3/15\nTuesday 3 March 2015\n\N{SNOWMAN} unseen chars\n')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert len(proc.stdout.splitlines()) == 3
  lines = tmp_path / 'in.txt'
  lines.write_text('21 jul 1950\n')
  proc = launch('--config=configs/dates.py:tiny', f'--workdir={workdir}', '--mode=predict',
                f'--input={lines}')
  assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1
  proc = launch('--config=configs/dates.py:tiny', f'--workdir={workdir}', '--mode=predict',
                '--config.eval.beam_size=3', input='3/3/15\n21 jul 1950\n')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert len(proc.stdout.splitlines()) == 2


def test_eval_falls_back_to_previous_checkpoint_when_latest_is_corrupt(tiny_run, tmp_path):
  workdir, _ = tiny_run
  copy = tmp_path / 'copy'
  shutil.copytree(workdir, copy)
  for f in (copy / 'checkpoints' / '6').rglob('*'):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncate every file.
  proc = launch('--config=configs/dates.py:tiny', f'--workdir={copy}', '--mode=eval')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'checkpoint at step 6' in proc.stderr and 'trying the previous one' in proc.stderr
  assert json.loads(proc.stdout.splitlines()[-1])['step'] == 4
  assert json.loads((copy / 'eval_results.json').read_text())['step'] == 4
  assert json.loads((copy / 'results.json').read_text())['step'] == 6  # training's, kept.


def test_resuming_with_different_shapes_is_a_clear_error(tiny_run, tmp_path):
  workdir, _ = tiny_run
  copy = tmp_path / 'copy'
  shutil.copytree(workdir, copy)
  proc = launch('--config=configs/dates.py:tiny', f'--workdir={copy}',
                '--config.model.decoder_dim=12', '--config.train.steps=8')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith('error: checkpoint at step 6')
  assert 'does not match this config' in proc.stderr and 'Traceback' not in proc.stderr
  assert sorted(p.name for p in (copy / 'checkpoints').iterdir() if p.name.isdigit()) == \
      ['2', '4', '6']  # nothing saved is lost.


def test_benchmark_prints_the_json_contract():
  proc = launch('--config=configs/dates.py:tiny', '--mode=benchmark')
  assert proc.returncode == 0, proc.stderr[-2000:]
  row = json.loads(proc.stdout.strip().splitlines()[-1])
  for key in ('config', 'devices', 'steps', 'seconds', 'examples_per_second',
              'tokens_per_second', 'peak_rss_mb'):
    assert key in row
  assert row['config'] == 'dates-tiny' and row['devices'] == 4 and row['steps'] == 2
  assert row['examples_per_second'] > 0 and row['tokens_per_second'] > row['examples_per_second']
  assert row['step_gflops'] > 0 and row['matmul_peak_gflops'] > 0 and row['mfu'] > 0


def test_non_finite_loss_stops_with_the_step(tmp_path):
  proc = launch('--config=configs/dates.py:tiny', f'--workdir={tmp_path}',
                '--config.optimizer.learning_rate=1e35', '--config.optimizer.warmup_steps=0',
                '--config.optimizer.schedule=constant', '--config.optimizer.grad_clip_norm=0',
                '--config.checkpoint.every=1', '--config.train.steps=20')
  assert proc.returncode == 1, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: non-finite') and 'at step' in last
  bad_step = int(last.split('at step ')[1].split()[0])
  saved = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
  assert saved and max(saved) == bad_step - 1
  assert not (tmp_path / 'results.json').exists()


@pytest.mark.parametrize('args, expected', [
    (['--config.train.stepz=5'], "unknown config key 'train.stepz'; did you mean train.steps"),
    (['--config.optimizer.learning_rat=0.1'], 'optimizer.learning_rate'),
    (['--config.train.steps=abc'], 'train.steps'),
    (['--config=configs/nope.py'], "config file 'configs/nope.py' not found"),
    (['--config=configs/dates.py:huge'], "unknown preset 'huge'"),
    (['--wrkdir=/tmp/x'], 'wrkdir'),
])
def test_cli_errors_are_one_line_with_exit_code_2(args, expected):
  proc = launch(*args, '--workdir=/nonexistent/never-created')
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith('error: ') and expected in lines[0]


def test_forced_cpu_devices_get_twice_their_threads_unless_told():
  from launch import cpu_pool_threads
  forced = {'XLA_FLAGS': '--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=4'}
  assert cpu_pool_threads(forced, cores=2) == '8'
  assert cpu_pool_threads(forced, cores=16) is None  # the pool already has room.
  assert cpu_pool_threads({**forced, 'PJRT_NPROC': '5'}, cores=2) is None
  assert cpu_pool_threads({'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}, 2) is None
  assert cpu_pool_threads({}, cores=2) is None


def test_huge_pages_are_asked_for_once_and_can_be_declined():
  from launch import huge_pages_environ
  env = huge_pages_environ({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2', 'X': '1'}, 'linux')
  assert env == {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1', 'X': '1'}
  assert huge_pages_environ({}, 'linux') == {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}
  assert huge_pages_environ(env, 'linux') is None  # the re-run itself goes on.
  assert huge_pages_environ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, 'linux') is None
  assert huge_pages_environ({'SEQLAB_HUGE_PAGES': '0'}, 'linux') is None
  assert huge_pages_environ({}, 'darwin') is None
