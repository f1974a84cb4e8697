"""GloVe's co-occurrence counts: X[i, j] = sum over occurrences of word j within
`window` words of word i (either side, inside one sentence) of 1 / distance.

Counting is memory-bounded and sorts instead of hashing: the token stream is
cut into blocks; a block's pairs become int64 keys (pair, distance) that
np.sort orders (fast: no argsort, the weight 1/d is read back from the key);
runs of equal keys give the counts. The blocks' (pair, weight) lists are merged
two at a time, each with one of similar size (as a merge sort does), so memory is
a few times the number of distinct pairs, never the number of raw pairs (17M
words x 15 distances here). Blocks are counted by `threads` threads (numpy's
sort releases the GIL). A symmetric window counts each unordered pair once and
mirrors it at the end.
"""
import concurrent.futures

import numpy as np

BLOCK_TOKENS = 1 << 20   # ~1M center words per block: 15M keys (120 MB) at window 15.


def count(tokens: np.ndarray, starts: np.ndarray, vocab_size: int, window: int = 15,
          symmetric: bool = True, block_tokens: int = BLOCK_TOKENS, threads: int = 2):
  """-> (rows int32 [N], cols int32 [N], values float32 [N]): each (row, col) once,
  sorted by (row, col); with a symmetric window, the pairs row <= col sorted and
  then their mirror images (row > col) in the same order."""
  sentence = np.zeros(len(tokens), np.int32)
  sentence[starts[1:-1]] = 1
  sentence = np.cumsum(sentence)
  tokens = tokens.astype(np.int64)
  block = lambda lo: _block(tokens, sentence, lo, min(lo + block_tokens, len(tokens)), window,
                            vocab_size, symmetric)
  los = list(range(0, len(tokens), block_tokens))
  stack = []  # sorted (keys, values) parts, each under half the size of the one before.
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    for i in range(0, len(los), threads):  # `threads` blocks in flight: memory stays bounded.
      for part in pool.map(block, los[i:i + threads]):
        stack.append(part)
        while len(stack) > 1 and 2 * len(stack[-1][0]) > len(stack[-2][0]):
          stack.append(_merge(*stack.pop(-2), *stack.pop()))
  while len(stack) > 1:
    stack.append(_merge(*stack.pop(-2), *stack.pop()))
  keys, values = stack[0] if stack else (np.zeros(0, np.int64), np.zeros(0))
  rows, cols = (keys // vocab_size).astype(np.int32), (keys % vocab_size).astype(np.int32)
  values = values.astype(np.float32)
  if symmetric:  # (low, high) -> both orders; a word beside itself counts from both sides.
    off = rows != cols
    values[~off] *= 2
    rows, cols = np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]])
    values = np.concatenate([values, values[off]])
  return rows, cols, values


def _block(tokens, sentence, lo, hi, window, vocab_size, symmetric):
  """The block's center words [lo, hi) -> (sorted unique pair keys, summed 1/d weights)."""
  bits = int(window).bit_length()
  keys = []
  for d in range(1, window + 1):
    # Pairs (context at p - d, center at p): each unordered pair once per distance.
    p = np.arange(max(lo, d), hi)
    p = p[sentence[p] == sentence[p - d]]
    left, right = tokens[p - d], tokens[p]
    if symmetric:
      left, right = np.minimum(left, right), np.maximum(left, right)
    keys.append((left * vocab_size + right) << bits | d)  # (left word, right word) as glove.c.
  keys = np.sort(np.concatenate(keys))
  if not len(keys):
    return keys, np.zeros(0)
  first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
  counts = np.diff(np.r_[first, len(keys)])
  keys = keys[first]
  weights = counts / (keys & ((1 << bits) - 1))
  pairs = keys >> bits
  first = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
  return pairs[first], np.add.reduceat(weights, first)


def _merge(keys, values, new_keys, new_values):
  """Two sorted unique key lists with values -> their sorted union, values added."""
  pos = np.searchsorted(keys, new_keys)
  hit = pos < len(keys)
  hit[hit] = keys[pos[hit]] == new_keys[hit]
  values = values.copy()
  values[pos[hit]] += new_values[hit]
  new_keys, new_values, pos = new_keys[~hit], new_values[~hit], pos[~hit]
  at = pos + np.arange(len(pos))  # where the new keys land in the union.
  old = np.ones(len(keys) + len(new_keys), bool)
  old[at] = False
  out_keys, out_values = np.empty(len(old), np.int64), np.empty(len(old))
  out_keys[at], out_values[at] = new_keys, new_values
  out_keys[old], out_values[old] = keys, values
  return out_keys, out_values
