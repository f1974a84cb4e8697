"""The training loop's throughput against --mode=benchmark's, for the same config.

  python benchmarks/loop_vs_benchmark.py [--rounds 2] [--steps 60] [CONFIG ...]

CONFIGs default to configs/lm.py:bench and configs/transformer.py:bench (random
tokens: no data needed). Each round runs, one after the other, `launch.py
--mode=benchmark` (its tokens_per_second) and a training run of --steps steps
logged every --steps/3 (train/tokens_per_second of each log after the first,
whose interval holds the compilation; no evaluation or checkpoint inside the
timed steps). The last line is one JSON object: per config, both rates of every
round and the ratio of their medians (trained / benchmark).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parents[1]


def launch(args) -> str:
  proc = subprocess.run([sys.executable, 'launch.py', *args], cwd=HERE, capture_output=True,
                        text=True)
  if proc.returncode:
    sys.exit(f'launch.py {" ".join(args)} failed:\n{proc.stderr[-3000:]}')
  return proc.stdout


def benchmark_rate(config: str) -> float:
  row = json.loads(launch([f'--config={config}', '--mode=benchmark']).strip().splitlines()[-1])
  return row['tokens_per_second']


def trained_rates(config: str, steps: int) -> list[float]:
  every = steps // 3
  with tempfile.TemporaryDirectory() as workdir:
    launch([f'--config={config}', f'--workdir={workdir}', f'--config.train.steps={steps}',
            f'--config.train.log_every={every}', f'--config.eval.every={10 * steps}',
            f'--config.checkpoint.every={10 * steps}', '--config.eval.num_samples=0'])
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      rows = [json.loads(line) for line in f]
  return [r['train/tokens_per_second'] for r in rows
          if 'train/tokens_per_second' in r and r['step'] > every]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('configs', nargs='*',
                      default=['configs/lm.py:bench', 'configs/transformer.py:bench'])
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--steps', type=int, default=60)
  args = parser.parse_args()
  out = {}
  for config in args.configs:
    bench, trained = [], []
    for _ in range(args.rounds):
      bench.append(round(benchmark_rate(config)))
      trained.extend(round(r) for r in trained_rates(config, args.steps))
      print(f'{config}: benchmark {bench}, trained {trained}', flush=True)
    out[config] = {'benchmark': bench, 'trained': trained,
                   'ratio': round(statistics.median(trained) / statistics.median(bench), 3)}
  cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
              if line.startswith('model name')), '?')
  commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=HERE, capture_output=True,
                          text=True).stdout.strip()
  print(json.dumps({'cpu': cpu, 'commit': commit, **out}))


if __name__ == '__main__':
  main()
