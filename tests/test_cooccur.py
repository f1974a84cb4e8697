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


def _stream(tokens, starts, pieces):
  """The tokens as `pieces` blocks of the stream, with their sentence ids."""
  sentence = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
  cuts = np.linspace(0, len(tokens), pieces + 1).astype(int)
  return [(tokens[a:b], sentence[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


@pytest.mark.parametrize('symmetric, pieces, memory_mb', [
    (True, 1, 0), (False, 1, 0), (True, 3, 0), (True, 5, 1e-6), (False, 3, 1e-6)])
def test_counts_match_a_direct_loop_across_blocks_and_sentences(symmetric, pieces, memory_mb,
                                                                  tmp_path):
  rng = np.random.RandomState(0)
  tokens = rng.randint(0, 7, 300).astype(np.int32)
  starts = np.array([0, 40, 41, 200, 300])
  # Several parts and merges; blocks of the stream that cut sentences; and with a
  # tiny memory limit, a sorted run spilled to disk after every part.
  rows, cols, values = cooccur.count(_stream(tokens, starts, pieces), 7, window=4,
                                     symmetric=symmetric, block_tokens=64, memory_mb=memory_mb,
                                     spill_dir=str(tmp_path))
  if memory_mb:
    assert len(list(tmp_path.glob('run*_keys.bin'))) >= pieces
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
