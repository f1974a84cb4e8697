"""Where a profiled step's device time goes, from a jax.profiler Perfetto trace.

  python launch.py --config=... --mode=benchmark --workdir=DIR --config.bench.profile_steps=3
  python benchmarks/kernel_times.py DIR [TOP] [HLO]

Prints the time of each device thread, of each class of kernel (matmul, attention,
copy, other) and of the TOP costliest kernels with the XLA op each ran for. With HLO,
the step's optimized module as XLA dumps it (XLA_FLAGS="--xla_dump_to=D
--xla_dump_hlo_as_text", D/*train_step*after_optimizations.txt), also the time of each
group of ops: the pass and the module path, every layer's copy summed.
"""
import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from research.benchmark import kernel_times  # noqa: E402


def fail(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def main(workdir: str, top: int = 30, hlo: str = ''):
  traces = sorted(glob.glob(os.path.join(workdir, '**', 'perfetto_trace.json.gz'), recursive=True),
                  key=os.path.getmtime)
  if not traces:
    fail(f'no perfetto_trace.json.gz under {workdir}; run --mode=benchmark with '
         '--config.bench.profile_steps=N and that --workdir first')
  try:
    with open(hlo) if hlo else open(os.devnull) as f:
      hlo_text = f.read()
    times = kernel_times(traces[-1], hlo_text)
  except (OSError, ValueError, KeyError) as e:
    fail(f'{traces[-1] if not hlo else hlo + " or " + traces[-1]} could not be read: {e!r}')
  print(traces[-1])
  for name, ms in sorted(times['threads'].items(), key=lambda kv: -kv[1])[:8]:
    print(f'thread {ms:10.2f} ms  {name}')
  total = sum(times['classes'].values()) or 1.0
  for cls, ms in sorted(times['classes'].items(), key=lambda kv: -kv[1]):
    print(f'class  {ms:10.2f} ms  {100 * ms / total:5.1f}%  {cls}')
  for group, ms in sorted(times.get('groups', {}).items(), key=lambda kv: -kv[1])[:top]:
    print(f'group  {ms:10.2f} ms  {100 * ms / total:5.1f}%  {group}')
  for ms, n, cls, name, op in times['kernels'][:top]:
    print(f'{ms:10.3f} ms {n:5d}x {cls:9s} {name[:70]:70s} {op[:60]}')


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir', help='the --workdir of a profiled --mode=benchmark run')
  parser.add_argument('top', nargs='?', type=int, default=30, help='kernels and groups to list')
  parser.add_argument('hlo', nargs='?', default='', help="the step's optimized HLO text")
  args = parser.parse_args()
  main(args.workdir, args.top, args.hlo)
