"""GloVe's co-occurrence counts: X[i, j] = sum over occurrences of word j within
`window` words of word i (either side, inside one sentence) of 1 / distance.

Counting is memory-bounded: the token stream is cut into blocks, each block's
pairs are reduced to unique (i, j) keys with summed weights, and the partial
results are merged whenever they grow past a bound. Memory is a few times the
number of distinct pairs, never the number of raw pairs (17M words x 30 here).
"""
import numpy as np

BLOCK_TOKENS = 1 << 21   # ~2M center words per block: 60M pair candidates at window 15.


def count(tokens: np.ndarray, starts: np.ndarray, vocab_size: int, window: int = 15,
          symmetric: bool = True, block_tokens: int = BLOCK_TOKENS):
  """-> (rows int32 [N], cols int32 [N], values float32 [N]), sorted by (row, col)."""
  sentence = np.zeros(len(tokens), np.int32)
  sentence[starts[1:-1]] = 1
  sentence = np.cumsum(sentence)
  tokens = tokens.astype(np.int64)
  parts, pending = [], 0
  for lo in range(0, len(tokens), block_tokens):
    hi = min(lo + block_tokens, len(tokens))
    keys, weights = [], []
    for d in range(1, window + 1):
      # Pairs (center at p, context at p - d): each unordered pair once per distance.
      p = np.arange(max(lo, d), hi)
      same = sentence[p] == sentence[p - d]
      a, b = tokens[p[same]], tokens[p[same] - d]
      keys.append(b * vocab_size + a)  # (left word, right word) as the C tool counts.
      weights.append(np.full(len(a), 1.0 / d, np.float64))
      if symmetric:
        keys.append(a * vocab_size + b)
        weights.append(weights[-1])
    parts.append(_reduce(np.concatenate(keys), np.concatenate(weights)))
    pending += len(parts[-1][0])
    if len(parts) > 1 and pending > 4 * len(parts[0][0]):
      parts, pending = [_merge(parts)], 0
  keys, values = _merge(parts) if parts else (np.zeros(0, np.int64), np.zeros(0))
  return ((keys // vocab_size).astype(np.int32), (keys % vocab_size).astype(np.int32),
          values.astype(np.float32))


def _reduce(keys, weights):
  unique, inverse = np.unique(keys, return_inverse=True)
  return unique, np.bincount(inverse, weights, minlength=len(unique))


def _merge(parts):
  return _reduce(np.concatenate([k for k, _ in parts]), np.concatenate([v for _, v in parts]))
