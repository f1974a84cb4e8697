"""Batch order as a pure function of (seed, step).

Step s of a run reads examples [s*B, (s+1)*B) of an endless stream made of one
seeded permutation of the training set per epoch. A resumed run therefore sees
exactly the batches an uninterrupted run would, with no iterator state to save.
"""
import functools

import jax
import numpy as np


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Indices into the training set of global batch number `step`."""
  positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
  epochs = positions // num_examples
  out = np.empty(batch_size, dtype=np.int64)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = _epoch_permutation(seed, int(epoch), num_examples)[positions[sel] % num_examples]
  return out


def process_slice(batch_size: int) -> slice:
  """The rows of a global batch that this process feeds (multi-host)."""
  n, i = jax.process_count(), jax.process_index()
  per = batch_size // n
  return slice(i * per, (i + 1) * per)
