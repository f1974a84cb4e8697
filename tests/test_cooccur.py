"""GloVe co-occurrence counting against a direct double loop."""
import numpy as np
import pytest

from research.data import cooccur


def _direct(tokens, starts, vocab, window, symmetric):
  x = np.zeros((vocab, vocab))
  for s, e in zip(starts[:-1], starts[1:]):
    for p in range(s, e):
      for q in range(max(s, p - window), p):
        x[tokens[q], tokens[p]] += 1.0 / (p - q)
        if symmetric:
          x[tokens[p], tokens[q]] += 1.0 / (p - q)
  return x


@pytest.mark.parametrize('symmetric', [True, False])
def test_counts_match_a_direct_loop_across_blocks_and_sentences(symmetric):
  rng = np.random.RandomState(0)
  tokens = rng.randint(0, 7, 300).astype(np.int32)
  starts = np.array([0, 40, 41, 200, 300])
  rows, cols, values = cooccur.count(tokens, starts, 7, window=4, symmetric=symmetric,
                                     block_tokens=64)  # several blocks and merges.
  x = np.zeros((7, 7))
  x[rows, cols] = values
  np.testing.assert_allclose(x, _direct(tokens, starts, 7, 4, symmetric), rtol=1e-6)
  keys = rows.astype(np.int64) * 7 + cols
  if symmetric:  # the pairs row <= col sorted, then their mirror images in the same order.
    upper = np.sum(rows <= cols)
    assert np.all(rows[:upper] <= cols[:upper]) and np.all(rows[upper:] > cols[upper:])
    np.testing.assert_array_equal(cols[upper:] * 7 + rows[upper:], keys[:upper][rows[:upper] < cols[:upper]])
    keys = keys[:upper]
  assert np.all(np.diff(keys) > 0)  # unique and sorted.
