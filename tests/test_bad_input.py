"""A table of bad and unusual input through launch.py, across every task.

Each bad case exits 2 with exactly one `error:` line on stderr naming the
problem, and no traceback; each unusual one exits 0. Files already in a
workdir are unchanged, and --mode=predict prints one stdout line per input
line. The commands run through tests/launch_batch.py, two at a time.
"""
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

DATES = '--config=configs/dates.py:tiny'
TRANSFORMER = '--config=configs/transformer.py:tiny'
W2V = '--config=configs/word2vec.py:tiny'
GLOVE = '--config=configs/glove.py:tiny'
POPCORN = '--config=configs/popcorn.py:tiny'
REG = '--config=configs/regression.py:tiny'
LM = '--config=configs/lm.py:tiny'


@dataclasses.dataclass
class Case:
  name: str
  args: list
  code: int = 2
  says: str = ''             # in the error line (code 2), or in stderr (code 0).
  workdir: str = ''          # a trained run to copy in as the workdir ('' a fresh one).
  stdin: str = ''
  lines: int | None = None   # predict: stdout lines expected.
  check: object = None       # fn(workdir) for what a clean run wrote.


def _batch(requests):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'launch_batch.py')],
                        input=''.join(json.dumps(r) + '\n' for r in requests), text=True,
                        capture_output=True, timeout=1200, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return {r['id']: r for r in map(json.loads, proc.stdout.splitlines())}


def _files(workdir):
  out = {}
  for base, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(base, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _data(root):
  """Small files for every task, and the paths the cases use."""
  rng = np.random.default_rng(0)
  d = {}
  words = ['king', 'queen', 'man', 'woman', 'boy', 'girl', 'the', 'is', 'a']
  corpus = root / 'corpus.txt'
  corpus.write_text('\n'.join(' '.join(rng.choice(words, 12)) for _ in range(200)) + '\n')
  (root / 'eval').mkdir()
  (root / 'eval' / 'questions-words.txt').write_text(': f\nking queen man woman\nboy girl man woman\n')
  d['corpus'], d['eval'] = str(corpus), str(root / 'eval')
  (root / 'empty.txt').write_text('')
  (root / 'cut.txt.gz').write_bytes(gzip.compress(corpus.read_bytes())[:40])
  d['empty'], d['cut'] = str(root / 'empty.txt'), str(root / 'cut.txt.gz')
  imdb = root / 'imdb'
  imdb.mkdir()
  good, bad = ['great', 'fine', 'loved'], ['awful', 'boring', 'hated']
  for split in ('train', 'test'):
    rows = ['id\tsentiment\treview'] + [
        f'{i}_{9 if i % 2 else 2}\t{i % 2}\t' + ' '.join(rng.choice(good if i % 2 else bad, 6))
        for i in range(40)]
    (imdb / f'{split}.tsv.gz').write_bytes(gzip.compress('\n'.join(rows).encode() + b'\n'))
  (imdb / 'unsup.tsv.gz').write_bytes(gzip.compress(b'id\treview\n0_0\tgreat fine\n'))
  d['imdb'] = str(imdb)
  X = rng.standard_normal((40, 2))
  y = 1 + X @ [2.0, -1.0] + 0.1 * rng.standard_normal(40)
  table = 'y,x1,x2\n' + ''.join(f'{a},{b},{c}\n' for a, (b, c) in zip(y, X))
  (root / 'data.csv').write_text(table)
  (root / 'three.csv').write_text('y,x1\n1,2\n2,4.5\n3,5.5\n')
  (root / 'constant.csv').write_text('y,x1\n' + ''.join(f'5,{i * i % 7}\n' for i in range(12)))
  (root / 'bom.csv').write_bytes(('y,x1\r\n' + ''.join(f'{2 * i + 1},{i}\r\n' for i in range(12))
                                  + '').encode('utf-8-sig'))
  (root / 'text.csv').write_text('y,x1\n1,2\n2,abc\n3,4\n')
  d.update({k: str(root / f'{k}.csv') for k in ('data', 'three', 'constant', 'bom', 'text')})
  lm = root / 'lm.txt'
  lm.write_text(' '.join(rng.choice(words, 1500)))
  (root / 'short.txt').write_text('the king')
  d['lm'], d['short'] = str(lm), str(root / 'short.txt')
  (root / 'a_file').write_text('not a directory\n')
  d['file'] = str(root / 'a_file')
  return d


def _trained(d):
  """The tiny runs the predict, eval and resume cases start from."""
  return {
      'dates': [DATES],
      'word2vec': [W2V, f'--config.data.path={d["corpus"]}', f'--config.data.eval_dir={d["eval"]}'],
      'glove': [GLOVE, f'--config.data.path={d["corpus"]}', f'--config.data.eval_dir={d["eval"]}'],
      'popcorn': [POPCORN, f'--config.data.path={d["imdb"]}'],
      'regression': [REG, f'--config.data.csv={d["data"]}'],
      'lm': [LM, f'--config.data.path={d["lm"]}'],
  }


def _cases(d, t):
  w2v = [W2V, f'--config.data.path={d["corpus"]}', f'--config.data.eval_dir={d["eval"]}']
  glove = [GLOVE, f'--config.data.path={d["corpus"]}', f'--config.data.eval_dir={d["eval"]}']
  pop = [POPCORN, f'--config.data.path={d["imdb"]}']
  reg = [REG, f'--config.data.csv={d["data"]}']
  lm = [LM, f'--config.data.path={d["lm"]}']

  def results(**want):
    def check(workdir):
      got = json.loads(open(os.path.join(workdir, 'results.json')).read())
      for key, value in want.items():
        assert got[key] == value, (key, got[key], value)
    return check

  return [
      # --- every task: the shared schema --------------------------------------------------
      Case('workdir_is_a_file', [DATES, '--workdir=' + d['file']], says='is a file'),
      Case('negative_steps', [DATES, '--config.train.steps=-1'], says='train.steps=-1'),
      Case('zero_batch', [DATES, '--config.train.batch_size=0'], says='train.batch_size=0'),
      Case('negative_lr', [DATES, '--config.optimizer.learning_rate=-0.1'], says='learning_rate'),
      Case('dropout_above_one', [DATES, '--config.model.dropout=1.5'], says='model.dropout=1.5'),
      Case('b2_of_one', [DATES, '--config.optimizer.b2=1.0'], says='optimizer.b2'),
      Case('eval_every_zero', [DATES, '--config.eval.every=0'], says='eval.every=0'),
      Case('checkpoint_every_zero', [W2V, '--config.checkpoint.every=0'], says='checkpoint.every'),
      Case('unknown_optimizer', [DATES, '--config.optimizer.name=adagrad'], says='adagrad'),
      Case('unknown_schedule', [LM, '--config.optimizer.schedule=exp'], says='schedule'),
      Case('unknown_dtype', [TRANSFORMER, '--config.model.dtype=float16'], says='float16'),
      Case('bench_without_warmup', [DATES, '--mode=benchmark', '--config.bench.warmup_steps=0'],
           says='bench.warmup_steps'),
      Case('optimizer_key_an_own_update_ignores', [W2V, '--config.optimizer.b1=0.5'],
           says='reads optimizer.learning_rate, optimizer.schedule'),
      Case('decode_bench_of_a_task_that_does_not_decode',
           [LM, '--mode=benchmark', '--config.bench.what=decode'], says='does not do'),
      Case('mesh_of_three', [DATES, '--config.parallel.mesh_shape=data=3'], says='mesh_shape'),
      Case('microbatches_not_dividing', [DATES, '--config.train.microbatches=3'],
           says='train.microbatches=3'),
      Case('profile_outside_the_run', [DATES, '--config.train.profile_steps=5:99'],
           says='profile_steps'),
      Case('eval_without_checkpoints', [DATES, '--mode=eval'], says='holds no checkpoints'),
      Case('average_more_than_kept', [DATES, '--mode=eval', '--config.eval.average_last=50'],
           says='average_last=50', workdir='dates'),
      Case('predict_input_missing', [DATES, '--mode=predict', '--input=/nonexistent/in.txt'],
           says='not found', workdir='dates'),
      Case('resume_with_other_shapes', [DATES, '--config.model.embed_dim=5'],
           says='does not match', workdir='dates'),
      # --- translation ----------------------------------------------------------------------
      Case('unknown_dataset', [DATES, '--config.data.name=nope'], says="'nope'"),
      Case('unknown_tokenizer', [DATES, '--config.data.tokenizer=bpe'], says='bpe'),
      Case('beam_of_zero', [DATES, '--config.eval.beam_size=0'], says='eval.beam_size=0'),
      Case('zero_source_length', [DATES, '--config.data.max_source_len=0'], says='max_source_len'),
      Case('heads_not_dividing', [TRANSFORMER, '--config.model.num_heads=3'], says='num_heads'),
      Case('predict_long_line', [DATES, '--mode=predict'], code=0, workdir='dates',
           stdin='1 jan 2000\n' + 'x' * 200 + '\nmarch 3 1999\n', lines=3,
           says='were truncated'),
      # --- word2vec and GloVe --------------------------------------------------------------
      Case('w2v_window_zero', w2v + ['--config.model.window=0'], says='model.window=0'),
      Case('w2v_negative_below_zero', w2v + ['--config.model.negative=-1'], says='model.negative'),
      Case('w2v_min_count_zero', w2v + ['--config.data.min_count=0'], says='data.min_count'),
      Case('w2v_missing_corpus', [W2V, '--config.data.path=/nonexistent/c.txt'], says='c.txt'),
      Case('w2v_empty_corpus', [W2V, f'--config.data.path={d["empty"]}'], says='empty.txt'),
      Case('w2v_cut_gzip', [W2V, f'--config.data.path={d["cut"]}'], says='cut.txt.gz'),
      Case('w2v_predict_unknown_word', w2v + ['--mode=predict'], workdir='word2vec',
           stdin='king\nzzzz\nqueen\n', lines=3, says='zzzz'),
      Case('glove_window_zero', glove + ['--config.data.window=0'], says='data.window=0'),
      Case('glove_x_max_zero', glove + ['--config.model.x_max=0'], says='model.x_max'),
      Case('glove_predict', glove + ['--mode=predict'], code=0, workdir='glove',
           stdin='king\nqueen\n', lines=2),
      # --- sentiment ---------------------------------------------------------------------
      Case('popcorn_unknown_features', pop + ['--config.data.features=words'], says='words'),
      Case('popcorn_ngram_zero', pop + ['--config.data.ngram_max=0'], says='data.ngram_max'),
      Case('popcorn_missing_dir', [POPCORN, '--config.data.path=/nonexistent/imdb'],
           says='/nonexistent/imdb'),
      Case('popcorn_predict', pop + ['--mode=predict'], code=0, workdir='popcorn',
           stdin='great fine\n\nawful boring hated\n', lines=3),
      # --- regression ----------------------------------------------------------------------
      Case('three_row_csv', [REG, f'--config.data.csv={d["three"]}'], code=0, says='too few',
           check=results(rows_fitted=3, rows_held_out=0)),
      Case('constant_target', [REG, f'--config.data.csv={d["constant"]}'], code=0,
           says='R^2 is undefined', check=results(**{'train/r2': None})),
      Case('byte_order_mark', [REG, f'--config.data.csv={d["bom"]}'], code=0,
           check=results(rows_fitted=10, rows_held_out=2)),
      Case('negative_alpha', [REG, f'--config.data.csv={d["data"]}',
                              '--config.model.estimator=ridge', '--config.model.alpha=-1',
                              '--config.model.gcv=False'], says='model.alpha=-1'),
      Case('l1_ratio_above_one', reg + ['--config.model.estimator=elastic_net',
                                        '--config.model.l1_ratio=1.5'], says='model.l1_ratio'),
      Case('degree_zero', reg + ['--config.model.degree=0'], says='model.degree=0'),
      Case('test_fraction_one', reg + ['--config.data.test_fraction=1.0'],
           says='data.test_fraction'),
      Case('text_in_a_number_column', [REG, f'--config.data.csv={d["text"]}'], says="'abc'"),
      Case('regression_data_path', [REG, f'--config.data.path={d["data"]}'],
           says='--config.data.csv=FILE'),
      Case('missing_target_column', reg + ['--config.data.target=z'], says="'z'"),
      Case('predict_wrong_value_count', reg + ['--mode=predict'], workdir='regression',
           stdin='1,2\n1,2,3,4,5,6\n0.5,0.5\n', lines=3, says='expected 2 value(s) (x1,x2), got 6'),
      # --- language model --------------------------------------------------------------
      Case('lm_context_one', lm + ['--config.data.context=1'], says='data.context=1'),
      Case('lm_top_p_zero', lm + ['--config.eval.top_p=0.0'], says='eval.top_p'),
      Case('lm_unknown_activation', lm + ['--config.model.activation=relu'],
           says='model.activation'),
      Case('lm_corpus_shorter_than_a_window', [LM, f'--config.data.path={d["short"]}'],
           says='fewer'),
      Case('lm_predict_odd_prompts', lm + ['--mode=predict'], code=0, workdir='lm',
           stdin='the king\nÜber 2000!\n' + 'the queen ' * 10 + '\n', lines=3),
  ]


@pytest.fixture(scope='module')
def table(tmp_path_factory):
  root = tmp_path_factory.mktemp('bad_input')
  d = _data(root)
  trained = {}
  requests = []
  for name, args in _trained(d).items():
    trained[name] = str(root / 'trained' / name)
    requests.append({'id': name, 'args': args + [f'--workdir={trained[name]}']})
  done = _batch(requests)
  for name, r in done.items():
    assert r['code'] == 0, (name, r['stderr'][-2000:])
  cases = _cases(d, trained)
  requests, before = [], {}
  for case in cases:
    workdir = str(root / 'cases' / case.name)
    if case.workdir:
      shutil.copytree(trained[case.workdir], workdir)
      before[case.name] = _files(workdir)
    has_workdir = any(a.startswith('--workdir=') for a in case.args)
    requests.append({'id': case.name, 'stdin': case.stdin,
                     'args': case.args + ([] if has_workdir else [f'--workdir={workdir}'])})
  return cases, _batch(requests), before, root


def test_at_least_forty_cases_across_every_task(table):
  cases = table[0]
  assert len(cases) >= 40
  configs = {a for c in cases for a in c.args if a.startswith('--config=')}
  assert configs == {DATES, TRANSFORMER, W2V, GLOVE, POPCORN, REG, LM}


def pytest_generate_tests(metafunc):
  if 'case_name' in metafunc.fixturenames:
    names = [c.name for c in _cases({k: '' for k in _KEYS}, {})]
    metafunc.parametrize('case_name', names)


_KEYS = ('corpus', 'eval', 'empty', 'cut', 'imdb', 'data', 'three', 'constant', 'bom', 'text',
         'lm', 'short', 'file')


def test_case(table, case_name):
  cases, results, before, root = table
  case = next(c for c in cases if c.name == case_name)
  r = results[case.name]
  assert 'Traceback' not in r['stderr'], r['stderr'][-3000:]
  errors = [l for l in r['stderr'].splitlines() if l.startswith('error:')]
  if case.code == 2:
    assert r['code'] == 2, (r['code'], r['stderr'][-2000:])
    assert len(errors) == 1, r['stderr'][-2000:]
    assert case.says in errors[0], errors[0]
  else:
    assert r['code'] == 0, r['stderr'][-2000:]
    assert not errors, errors
    assert case.says in r['stderr'], r['stderr'][-2000:]
  if case.lines is not None:
    assert len(r['stdout'].splitlines()) == case.lines, r['stdout']
  if case.name in before:
    after = _files(str(root / 'cases' / case.name))
    assert {k: v for k, v in after.items() if k in before[case.name]} == before[case.name]
  if case.check:
    case.check(str(root / 'cases' / case.name))
