"""Where a profiled step's device time goes, from a jax.profiler Perfetto trace.

  python launch.py --config=... --mode=benchmark --workdir=DIR --config.bench.profile_steps=3
  python benchmarks/kernel_times.py DIR [TOP]

Prints the time of each device thread, of each class of kernel (matmul, attention,
copy, other) and of the TOP costliest kernels with the XLA op each ran for.
"""
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from research.benchmark import kernel_times  # noqa: E402


def main(workdir: str, top: int = 30):
  traces = sorted(glob.glob(os.path.join(workdir, '**', 'perfetto_trace.json.gz'), recursive=True),
                  key=os.path.getmtime)
  if not traces:
    sys.exit(f'error: no perfetto_trace.json.gz under {workdir}; run --mode=benchmark with '
             '--config.bench.profile_steps=N and that --workdir first')
  times = kernel_times(traces[-1])
  print(traces[-1])
  for name, ms in sorted(times['threads'].items(), key=lambda kv: -kv[1])[:8]:
    print(f'thread {ms:10.2f} ms  {name}')
  total = sum(times['classes'].values()) or 1.0
  for cls, ms in sorted(times['classes'].items(), key=lambda kv: -kv[1]):
    print(f'class  {ms:10.2f} ms  {100 * ms / total:5.1f}%  {cls}')
  for ms, n, cls, name, op in times['kernels'][:top]:
    print(f'{ms:10.3f} ms {n:5d}x {cls:9s} {name[:70]:70s} {op[:60]}')


if __name__ == '__main__':
  main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
