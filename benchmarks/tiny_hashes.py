"""Trains every float32 tiny preset on small made-up data and prints its params_sha256.

Two checkouts trained by this script on one machine show whether a change kept
float32 training bit for bit (XLA compiles for the CPU it runs on, so hashes
compare within one machine only):

  python benchmarks/tiny_hashes.py --out=/tmp/new
  git worktree add /tmp/old REV
  python benchmarks/tiny_hashes.py --root=/tmp/old --out=/tmp/old-runs

Each run is `python launch.py --config=... --workdir=OUT/NAME` in ROOT; the last
line is one JSON object, {name: the hash's first 12 hex digits, or "failed (...)"}.
The runs are on the CPU (JAX_PLATFORMS=cpu unless set), where model.dtype=auto
is float32.
"""
import argparse
import gzip
import json
import os
import pathlib
import random
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parents[1]
WORDS = ('the king queen man woman child dog cat rides reads plays walks in on a of snow park '
         'book ball river city house old young red blue green runs sings eats').split()
GERMAN = ('der die das ein eine mann frau kind hund katze fährt liest spielt läuft im auf '
          'schnee park buch ball fluss stadt haus alt jung rot blau grün singt isst').split()


def sentences(rng, vocab, n, lo=3, hi=12):
  return [' '.join(rng.choice(vocab) for _ in range(rng.randint(lo, hi))) + ' .'
          for _ in range(n)]


def write_gz(path, lines):
  path.parent.mkdir(parents=True, exist_ok=True)
  with gzip.open(path, 'wt', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')


def make_data(root: pathlib.Path) -> dict:
  """Small deterministic files: a text corpus, a Multi30k layout, IMDB TSVs, a CSV."""
  rng = random.Random(0)
  corpus = root / 'corpus.txt'
  corpus.write_text('\n'.join(sentences(rng, WORDS, 400)) + '\n')
  multi30k = root / 'multi30k'
  for split, n in (('train', 200), ('val', 16), ('test_2016_flickr', 16)):
    de = sentences(rng, GERMAN, n)
    write_gz(multi30k / 'raw' / f'{split}.de.gz', de)
    write_gz(multi30k / 'raw' / f'{split}.en.gz', [s.replace('der', 'the') for s in de])
  imdb = root / 'imdb'
  good, bad = ['great', 'superb', 'loved'], ['awful', 'dull', 'hated']
  for split in ('train', 'test'):
    rows = ['id\tsentiment\trating\treview']
    for i in range(64):
      words = sentences(rng, WORDS, 1)[0].split() + rng.sample(good if i % 2 else bad, 2)
      rng.shuffle(words)
      rows.append(f'{i}_{9 if i % 2 else 2}\t{i % 2}\t{9 if i % 2 else 2}\t{" ".join(words)}')
    write_gz(imdb / f'{split}.tsv.gz', rows)
  write_gz(imdb / 'unsup.tsv.gz', ['id\treview'] + [f'{i}_0\t{s}' for i, s in
                                                   enumerate(sentences(rng, WORDS, 64))])
  csv = root / 'regression.csv'
  rows = ['x1,x2,y']
  for _ in range(64):
    x1, x2 = rng.uniform(-1, 1), rng.uniform(-1, 1)
    rows.append(f'{x1!r},{x2!r},{1.5 * x1 - 2.0 * x2 + 0.25 + rng.gauss(0, 0.1)!r}')
  csv.write_text('\n'.join(rows) + '\n')
  return dict(corpus=corpus, multi30k=multi30k, imdb=imdb, csv=csv)


def runs(data: dict) -> dict:
  """{name: launch.py arguments} for every float32 tiny preset."""
  m30k = [f'--config.data.path={data["multi30k"]}']
  return {
      'dates': ['--config=configs/dates.py:tiny'],
      'seq2seq_bahdanau': ['--config=configs/seq2seq.py:tiny', *m30k],
      'seq2seq_luong_general': ['--config=configs/seq2seq.py:tiny', *m30k,
                                '--config.model.attention=luong_general'],
      'seq2seq_lstm': ['--config=configs/seq2seq.py:tiny', *m30k,
                       '--config.model.name=rnn_seq2seq', '--config.model.rnn=lstm'],
      'seq2seq_gru_context': ['--config=configs/seq2seq.py:tiny', *m30k,
                              '--config.model.name=rnn_seq2seq',
                              '--config.model.rnn=gru_context'],
      'transformer': ['--config=configs/transformer.py:tiny', *m30k],
      'lm': ['--config=configs/lm.py:tiny', f'--config.data.path={data["corpus"]}'],
      'skipgram': ['--config=configs/word2vec.py:tiny', f'--config.data.path={data["corpus"]}'],
      'cbow': ['--config=configs/word2vec.py:tiny', f'--config.data.path={data["corpus"]}',
               '--config.model.cbow=True'],
      'glove': ['--config=configs/glove.py:tiny', f'--config.data.path={data["corpus"]}'],
      'popcorn_tfidf': ['--config=configs/popcorn.py:tiny', f'--config.data.path={data["imdb"]}'],
      'popcorn_neural': ['--config=configs/popcorn.py:tiny', f'--config.data.path={data["imdb"]}',
                         '--config.data.features=tokens', '--config.model.name=sentiment_encoder'],
      'regression_ols': ['--config=configs/regression.py:tiny'],
      'regression_ridge': ['--config=configs/regression.py:tiny',
                           '--config.model.estimator=ridge'],
      'regression_csv': ['--config=configs/regression.py:tiny',
                         f'--config.data.csv={data["csv"]}'],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--root', default=str(HERE), help='the checkout whose launch.py runs')
  parser.add_argument('--out', required=True, help='a folder for the data and the workdirs')
  parser.add_argument('--only', default='', help='comma-separated run names')
  args = parser.parse_args()
  out = pathlib.Path(args.out).resolve()
  out.mkdir(parents=True, exist_ok=True)
  wanted = {n for n in args.only.split(',') if n}
  env = {k: v for k, v in os.environ.items() if k != 'SEQLAB_DATA'}
  env.setdefault('JAX_PLATFORMS', 'cpu')
  hashes = {}
  for name, flags in runs(make_data(out)).items():
    if wanted and name not in wanted:
      continue
    workdir = out / name
    subprocess.run(['rm', '-rf', str(workdir)], check=True)
    with open(out / f'{name}.log', 'w') as log:
      code = subprocess.run([sys.executable, 'launch.py', *flags, f'--workdir={workdir}'],
                            cwd=args.root, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    try:
      hashes[name] = json.loads((workdir / 'results.json').read_text())['params_sha256'][:12]
    except (OSError, KeyError, ValueError):
      hashes[name] = f'failed (exit {code}, {out / name}.log)'
    print(f'{name:24s} {hashes[name]}', flush=True)
  print(json.dumps(hashes))


if __name__ == '__main__':
  main()
