"""Data at scale: makes large corpora from the shared datasets and measures the
prepared stores with launch.py's own command lines (docs/benchmarks.md, "Data at
scale").

  python benchmarks/data_at_scale.py --out=/tmp/scale [PART ...]

PARTs (all by default): lm (character-level LM on 100M and 1B characters:
--mode=prepare, then --mode=benchmark from a cold process), reader (the batch
reader alone at gpt2_small's shapes), spm (SentencePiece preparation), predict
(one line of --mode=predict on a finished LM run), word_vectors (word2vec's
start and GloVe's counting on about 510M words), translation (4.5M pairs),
popcorn (one line of --mode=predict on a finished tfidf run). Each command runs under
/usr/bin/time -v, its log in OUT; the corpora are copies (symbolic links) of
$SEQLAB_DATA's, and the stores go to OUT/cache. The last line printed is one
JSON object of every figure.
"""
import argparse
import gzip
import json
import os
import pathlib
import re
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
from research.data import TEXT8LIKE  # noqa: E402  (the corpus the configs default to)


def timed(out: pathlib.Path, name: str, args, env, stdin=None) -> dict:
  """Runs `python launch.py ARGS` under /usr/bin/time -v: wall seconds, peak RSS
  (MB), exit code and the last JSON line printed, if any."""
  log = out / f'{name}.log'
  with open(log, 'w') as f:
    started = time.time()
    code = subprocess.run(['/usr/bin/time', '-v', sys.executable, 'launch.py', *args],
                          cwd=HERE, env=env, stdout=f, stderr=subprocess.STDOUT,
                          input=stdin, text=True).returncode
  text = log.read_text()
  rss = re.search(r'Maximum resident set size \(kbytes\): (\d+)', text)
  rows = [line for line in text.splitlines() if line.startswith('{')]
  row = {'wall_seconds': round(time.time() - started, 2), 'exit': code,
         'peak_rss_mb': round(int(rss.group(1)) / 1024) if rss else None}
  if rows:
    try:
      row['row'] = json.loads(rows[-1])
    except ValueError:
      pass
  print(f'{name}: {json.dumps(row)[:400]}', flush=True)
  return row


def corpora(data: pathlib.Path, out: pathlib.Path) -> dict:
  """lm100m: the text8-style corpus (10^8 characters, 17M words); lm1b: ten copies
  of it; w2v500m: thirty; pairs4m5: Multi30k's training pairs 155 times over."""
  source = data / TEXT8LIKE
  if not source.exists():
    sys.exit(f'{source} not found: set SEQLAB_DATA to the shared datasets')
  made = {}
  for name, copies in (('lm100m', 1), ('lm1b', 10), ('w2v500m', 30)):
    folder = out / 'corpora' / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
      link = folder / f'part{i:02d}.gz'
      if not link.exists():
        link.symlink_to(source)
    made[name] = folder
  pairs = out / 'corpora' / 'pairs4m5'
  pairs.mkdir(parents=True, exist_ok=True)
  raw = data / 'multi30k' / 'raw'
  for lang in ('de', 'en'):
    if not (pairs / f'train.{lang}').exists():
      text = gzip.decompress((raw / f'train.{lang}.gz').read_bytes())
      (pairs / f'train.{lang}').write_bytes(text * 155)
    for split in ('val', 'test_2016_flickr'):
      link = pairs / f'{split}.{lang}.gz'
      if not link.exists():
        link.symlink_to(raw / f'{split}.{lang}.gz')
  made['pairs4m5'] = pairs
  return made


def store_meta(cache: pathlib.Path, corpus: pathlib.Path, tokenizer: str) -> dict:
  """The meta.json of the store prepared from `corpus` with `tokenizer`."""
  for meta in (cache / 'stores').glob(f'{corpus.name}-*-{tokenizer}-*/meta.json'):
    return json.loads(meta.read_text())
  return {}


def lm(out, env, made, results):
  cache = pathlib.Path(env['SEQLAB_CACHE'])
  for name in ('lm100m', 'lm1b'):
    corpus = made[name]
    base = ['--config=configs/lm.py:char', f'--config.data.path={corpus}']
    prep = timed(out, f'{name}-prepare', base + ['--mode=prepare'], env)
    meta = store_meta(cache, corpus, 'char')
    bench = timed(out, f'{name}-benchmark', base + [
        '--mode=benchmark', '--config.bench.warmup_steps=1', '--config.bench.steps=5',
        '--config.bench.matmul_size=0'], env)
    row = bench.get('row', {})
    results[name] = {
        'characters': meta.get('characters'), 'tokens': meta.get('tokens'),
        'prepare_seconds': meta.get('seconds'), 'prepare_wall_seconds': prep['wall_seconds'],
        'prepare_mb_per_second': round(meta['characters'] / meta['seconds'] / 1e6, 1)
        if meta else None,
        'prepare_peak_rss_mb': prep['peak_rss_mb'],
        'start_to_first_step_seconds': row.get('start_to_first_step_seconds'),
        'first_step_seconds': row.get('first_step_seconds'),
        'benchmark_peak_rss_mb': bench['peak_rss_mb'],
        'tokens_per_second': row.get('tokens_per_second')}


def reader(out, env, made, results, steps: int = 200):
  """Corpus.batch alone at 64 x 1024 (+1) on the 1B store, in a fresh process."""
  code = f'''
import json, time, resource
from research import config as config_lib
from research.data import lm_corpus
c = config_lib.load_config_file('configs/lm.py', 'gpt2_small')
c.data.path = {str(made['lm1b'])!r}
corpus = lm_corpus.load(c.data, 1024)
corpus.batch(0, 0, 64, 1025)
t = time.perf_counter()
for step in range({steps}):
  corpus.batch(0, step, 64, 1025)
s = time.perf_counter() - t
print(json.dumps({{'tokens_per_second': round({steps} * 64 * 1024 / s),
                  'batches_per_second': round({steps} / s, 1),
                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}}))
'''
  proc = subprocess.run([sys.executable, '-c', code], cwd=HERE, env=env, capture_output=True,
                        text=True)
  row = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {
      'error': proc.stderr[-500:]}
  print(f'reader: {row}', flush=True)
  results['reader_64x1024'] = row


def spm(out, env, made, results):
  cache = pathlib.Path(env['SEQLAB_CACHE'])
  corpus = made['lm100m']
  prep = timed(out, 'spm-prepare', [
      '--config=configs/lm.py:char', f'--config.data.path={corpus}', '--mode=prepare',
      '--config.data.tokenizer=sentencepiece', '--config.data.vocab_size=8000'], env)
  meta = store_meta(cache, corpus, 'sentencepiece')
  results['sentencepiece_100m'] = {
      'prepare_seconds': meta.get('seconds'), 'tokens': meta.get('tokens'),
      'prepare_mb_per_second': round(meta['characters'] / meta['seconds'] / 1e6, 2)
      if meta else None, 'prepare_peak_rss_mb': prep['peak_rss_mb']}


def predict(out, env, made, results):
  """One line of --mode=predict on a finished (2-step) LM run of the 100M corpus."""
  workdir = out / 'lm-run'
  args = ['--config=configs/lm.py:tiny', f'--config.data.path={made["lm100m"]}',
          f'--workdir={workdir}']
  timed(out, 'lm-train', args + ['--config.train.steps=2', '--config.eval.validation_tokens=256',
                                 '--config.eval.test_tokens=256'], env)
  row = timed(out, 'lm-predict', args + ['--mode=predict'], env, stdin='the meaning of life\n')
  results['lm_predict_one_line'] = {'wall_seconds': row['wall_seconds'],
                                    'peak_rss_mb': row['peak_rss_mb'], 'exit': row['exit']}


def word_vectors(out, env, made, results):
  """word2vec and GloVe on 30 copies of the text8-style corpus (about 510M words):
  the word store, then a cold start to the first step; GloVe's counting under
  data.cooccur_memory_mb."""
  corpus = made['w2v500m']
  base = ['--config=configs/word2vec.py:skipgram', f'--config.data.path={corpus}']
  prep = timed(out, 'w2v-prepare', base + ['--mode=prepare'], env)
  bench = timed(out, 'w2v-benchmark', base + [
      '--mode=benchmark', '--config.bench.warmup_steps=1', '--config.bench.steps=5',
      '--config.bench.matmul_size=0'], env)
  row = bench.get('row', {})
  results['word2vec_500m'] = {
      'prepare_wall_seconds': prep['wall_seconds'], 'prepare_peak_rss_mb': prep['peak_rss_mb'],
      'start_to_first_step_seconds': row.get('start_to_first_step_seconds'),
      'benchmark_wall_seconds': bench['wall_seconds'], 'peak_rss_mb': bench['peak_rss_mb'],
      'words_per_second': row.get('words_per_second')}
  glove = timed(out, 'glove-count', [
      '--config=configs/glove.py', f'--config.data.path={corpus}', '--mode=prepare',
      '--config.data.cooccur_memory_mb=1024'], env)
  results['glove_count_500m'] = {'memory_mb': 1024, 'wall_seconds': glove['wall_seconds'],
                                 'peak_rss_mb': glove['peak_rss_mb'], 'exit': glove['exit']}


def translation(out, env, made, results):
  """Multi30k's 29,000 training pairs 155 times over (4.5M pairs, WMT14's size) as
  aligned files: --mode=prepare, then a cold start to the first step."""
  folder = made['pairs4m5']
  base = ['--config=configs/transformer.py:multi30k', '--config.data.name=parallel',
          f'--config.data.path={folder}', '--config.data.pair=de-en',
          '--config.data.validation_split=val', '--config.data.test_split=test_2016_flickr']
  prep = timed(out, 'pairs-prepare', base + ['--mode=prepare'], env)
  bench = timed(out, 'pairs-benchmark', base + [
      '--mode=benchmark', '--config.bench.warmup_steps=1', '--config.bench.steps=3',
      '--config.bench.matmul_size=0'], env)
  row = bench.get('row', {})
  results['translation_4m5_pairs'] = {
      'prepare_wall_seconds': prep['wall_seconds'], 'prepare_peak_rss_mb': prep['peak_rss_mb'],
      'start_to_first_step_seconds': row.get('start_to_first_step_seconds'),
      'first_step_seconds': row.get('first_step_seconds'), 'peak_rss_mb': bench['peak_rss_mb']}


def popcorn(out, env, made, results):
  """One line of --mode=predict on a finished popcorn.py:tfidf run."""
  workdir = out / 'popcorn-run'
  args = ['--config=configs/popcorn.py:tfidf', f'--workdir={workdir}']
  timed(out, 'popcorn-train', args, env)
  row = timed(out, 'popcorn-predict', args + ['--mode=predict'], env,
              stdin='a wonderful film, moving and superb\n')
  results['popcorn_predict_one_line'] = {'wall_seconds': row['wall_seconds'],
                                         'peak_rss_mb': row['peak_rss_mb'], 'exit': row['exit']}


PARTS = {'lm': lm, 'reader': reader, 'spm': spm, 'predict': predict,
         'word_vectors': word_vectors, 'translation': translation, 'popcorn': popcorn}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='/tmp/seqlab-scale')
  parser.add_argument('parts', nargs='*', help=f'any of {", ".join(PARTS)} (default: all)')
  args = parser.parse_args()
  if unknown := set(args.parts) - set(PARTS):
    parser.error(f'unknown part(s) {", ".join(sorted(unknown))}; use {", ".join(PARTS)}')
  out = pathlib.Path(args.out).resolve()
  out.mkdir(parents=True, exist_ok=True)
  data = pathlib.Path(os.environ.get('SEQLAB_DATA', HERE.parent / 'shared' / 'data')).resolve()
  env = {**os.environ, 'SEQLAB_CACHE': str(out / 'cache'), 'JAX_PLATFORMS': 'cpu'}
  made = corpora(data, out)
  results = {'cpu': _cpu(), 'commit': _commit()}
  for part in args.parts or list(PARTS):
    PARTS[part](out, env, made, results)
  print(json.dumps(results))


def _cpu() -> str:
  for line in open('/proc/cpuinfo'):
    if line.startswith('model name'):
      return line.split(':', 1)[1].strip()
  return ''


def _commit() -> str:
  return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=HERE, capture_output=True,
                        text=True).stdout.strip()


if __name__ == '__main__':
  main()
