"""The LM batch reader against grain's MapDataset on the same prepared store.

  python benchmarks/reader_vs_grain.py STORE [--steps 200]

STORE is a prepared language-model store (a folder with tokens.bin and
meta.json, e.g. from `launch.py --mode=prepare`). Both readers make batches of
64 windows of 1,025 tokens at random offsets, a pure function of (seed, step):
seqlab's one pread a row (research/data/store.py's TokenFile.windows), and
grain's MapDataset (index-pure shuffle of window starts, a map that slices a
memory map, a batch). Prints one JSON line of tokens/s each. grain is not a
project dependency: run this with a Python that has numpy and grain.
"""
import argparse
import json
import os
import time

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('store')
  parser.add_argument('--steps', type=int, default=200)
  args = parser.parse_args()
  meta = json.load(open(os.path.join(args.store, 'meta.json')))
  dtype = np.dtype(meta['dtype'])
  path = os.path.join(args.store, 'tokens.bin')
  n = os.path.getsize(path) // dtype.itemsize
  batch, length = 64, 1025

  fd = os.open(path, os.O_RDONLY)

  def pread_batch(step):
    starts = np.random.default_rng([0, step]).integers(0, n - length + 1, batch)
    out = np.empty((batch, length), np.int32)
    for row, s in enumerate(starts):
      out[row] = np.frombuffer(os.pread(fd, length * dtype.itemsize, int(s) * dtype.itemsize),
                               dtype)
    return out

  import grain  # pylint: disable=g-import-not-at-top
  tokens = np.memmap(path, dtype, 'r')
  starts = grain.MapDataset.range(n - length + 1).shuffle(seed=0)
  windows = starts.map(lambda s: np.asarray(tokens[s:s + length], np.int32)).batch(batch)

  out = {'tokens_per_batch': batch * (length - 1), 'store_tokens': n}
  for name, get in (('pread', pread_batch), ('grain', lambda step: windows[step])):
    get(0)
    t = time.perf_counter()
    for step in range(1, args.steps + 1):
      get(step)
    seconds = time.perf_counter() - t
    out[f'{name}_tokens_per_second'] = round(args.steps * batch * (length - 1) / seconds)
  print(json.dumps(out))


if __name__ == '__main__':
  main()
