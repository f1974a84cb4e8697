"""Random token pairs: benchmark shapes without any data on disk.

Every sentence is exactly `length` words drawn uniformly from `vocab_size`
made-up words, so a word vocabulary of `vocab_size` entries (specials included)
covers them and every batch is full width: tokens/s counts no padding.
"""
import numpy as np

from research.data.parallel import Split
from research.data.vocab import SPECIALS


def _sentences(rng, n: int, length: int, vocab_size: int) -> list[str]:
  ids = rng.integers(0, vocab_size - len(SPECIALS), size=(n, length))
  return [' '.join(f'w{i}' for i in row) for row in ids]


def load(seed: int, train_size: int, vocab_size: int, source_len: int,
         target_len: int) -> dict[str, Split]:
  """{'train', 'validation', 'test'}; targets leave one position for the end token."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, n in (('train', train_size), ('validation', 64), ('test', 64)):
    out[name] = Split(_sentences(rng, n, source_len, vocab_size),
                      _sentences(rng, n, target_len - 1, vocab_size))
  return out
