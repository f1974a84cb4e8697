"""word2vec (Mikolov et al. 2013): skip-gram and CBOW as pure functions.

word2vec (Mikolov et al. 2013): skip-gram and CBOW, negative sampling or
hierarchical softmax, as pure functions of (params, batch).

Parameters: 'input' [V, D], the word vectors (the C tool's syn0); 'output'
[V, D] for negative sampling (syn1neg) or [V - 1, D] for the hierarchical
softmax's inner nodes (syn1). Initialization as in the C tool: input uniform in
+-0.5 / D, output zero.

A batch is a slice of the subsampled token stream with `window` tokens of
context on each side (research/tasks/embeddings.py builds it); every position
of the middle part is a center word. Per center, word2vec's updates:
- the window is shrunk to b ~ U{1..window} (dynamic window), inside the
  center's sentence;
- skip-gram: each context word's input vector predicts the center; CBOW: the
  sum (or mean) of the context's input vectors predicts it, and each context
  word's vector then moves by the hidden layer's whole error, as in the C tool
  and gensim (with the sum gensim divides that error by the context's size):
  not by the mean's gradient, which is 1/size of it;
- negative sampling: the center (label 1) against `negative` words from the
  unigram^0.75 distribution (label 0), drawn once per center and shared by its
  context words as in BlazingText, which turns the window into one small
  matrix product; hierarchical softmax: the binary decisions along the center's
  Huffman path.

`updates` returns the SGD steps as (rows, deltas) for the rows the batch
touches: delta = -lr * d(loss)/d(row) (CBOW's context rows: the rule above),
summed when a row occurs more than once
in the batch (what Hogwild threads do in the C tool, without the races).
Applying them is a scatter-add, so a step costs the batch, not the vocabulary.
"""
import dataclasses
import heapq

import jax
import jax.numpy as jnp
import numpy as np

from research.models import register

# Products at full f32: a GPU's default float32 product is TF32 (10-bit mantissa),
# which moves a run off the CPU's numbers and made skip-gram diverge
# (docs/benchmarks.md).
_F32 = jax.lax.Precision.HIGHEST


def _mm(a, b):
  return jnp.matmul(a, b, precision=_F32)


def _einsum(spec, a, b):
  return jnp.einsum(spec, a, b, precision=_F32)


def _log_sigmoid(x):
  """jax.nn.log_sigmoid without its logaddexp guards: the same values, infinities
  included, in fewer passes over a round's noise scores."""
  return jnp.minimum(x, 0.0) - jnp.log1p(jnp.exp(-jnp.abs(x)))


@register('word2vec', 'word2vec')
@dataclasses.dataclass(frozen=True)
class Word2Vec:
  vocab_size: int
  dim: int = 100
  window: int = 5
  negative: int = 5       # 0: hierarchical softmax instead.
  cbow: bool = False      # False: skip-gram.
  cbow_mean: bool = True  # CBOW's hidden layer: mean (gensim's default) or sum of the context.
  shared_negatives: int = 64  # segment_updates: negative draws shared by a segment's centers.

  def init(self, rng):
    v, d = self.vocab_size, self.dim
    inputs = jax.random.uniform(rng, (v, d), jnp.float32, -0.5 / d, 0.5 / d)
    outputs = jnp.zeros((v if self.negative else max(v - 1, 1), d), jnp.float32)
    return {'input': inputs, 'output': outputs}

  # ---- the batch's structure: windows and targets.

  def windows(self, tokens, sentence, valid, reduced):
    """tokens, sentence ids, valid [B + 2W] and each center's reduced window [B]
    (segment_noise) -> (centers [B], contexts [B, 2W], mask [B, 2W])."""
    w = self.window
    size = tokens.shape[0] - 2 * w
    offsets = np.array([o for o in range(-w, w + 1) if o], np.int32)  # [2W]
    pos = w + jnp.arange(size)[:, None] + offsets[None]                # [B, 2W]
    mask = self.window_mask(sentence, valid, reduced, valid[w:w + size]).T
    return tokens[w:w + size], tokens[pos], mask

  def window_mask(self, sentence, valid, reduced, center_ok):
    """[2W, L]: whether the word at offset o (-W..-1, 1..W) of each center is
    its context: inside the reduced window, valid, and in the same sentence."""
    w = self.window
    size = sentence.shape[0] - 2 * w
    return jnp.stack([(abs(o) <= reduced) & valid[w + o:w + o + size] & center_ok
                      & (sentence[w + o:w + o + size] == sentence[w:w + size])
                      for o in range(-w, w + 1) if o])

  def targets(self, centers, rng, noise_cdf):
    """Negative sampling: ([B, 1 + K] word ids, [B, 1 + K] labels, [B, 1 + K] mask)."""
    k = self.negative
    u = jax.random.uniform(rng, (centers.shape[0], k))
    negatives = jnp.minimum(jnp.searchsorted(noise_cdf, u), self.vocab_size - 1)
    words = jnp.concatenate([centers[:, None], negatives.astype(centers.dtype)], 1)
    labels = jnp.zeros(words.shape, jnp.float32).at[:, 0].set(1.0)
    mask = jnp.ones(words.shape, bool).at[:, 1:].set(negatives != centers[:, None])
    return words, labels, mask  # the C tool skips a negative equal to the center.

  @staticmethod
  def huffman_targets(centers, codes, points, lengths):
    """Hierarchical softmax: inner nodes on the center's path, label 1 - code bit."""
    max_len = codes.shape[1]
    mask = jnp.arange(max_len)[None] < lengths[centers][:, None]
    return points[centers], 1.0 - codes[centers].astype(jnp.float32), mask

  # ---- loss and updates.

  def _cbow_scales(self, count):
    """(hidden = context sum * scale, context rows' step = hidden's step * back).
    Mean: 1/size and 1, as the C tool and gensim; sum: 1 and 1/size, as gensim."""
    inverse = 1.0 / jnp.maximum(count, 1.0)
    ones = jnp.ones_like(count)
    return (inverse, ones) if self.cbow_mean else (ones, inverse)

  def loss_and_updates(self, params, centers, contexts, context_mask, words, labels,
                       target_mask, lr):
    """(loss summed over the batch's predictions, number of predictions,
    {'input': (rows, deltas), 'output': (rows, deltas)})."""
    ctx = params['input'][contexts]                   # [B, 2W, D]
    out = params['output'][words]                     # [B, T, D]
    cmask = context_mask.astype(jnp.float32)[..., None]
    tmask = target_mask.astype(jnp.float32)
    if self.cbow:
      count = context_mask.sum(1, keepdims=True).astype(jnp.float32)  # [B, 1]
      scale, back = self._cbow_scales(count)
      hidden = (ctx * cmask).sum(1) * scale            # [B, D]
      has_context = (count > 0).astype(jnp.float32)    # a center alone in its sentence: skip.
      scores = _einsum('bd,btd->bt', hidden, out)
      live = tmask * has_context
      loss = -(_log_sigmoid(jnp.where(labels > 0, scores, -scores)) * live).sum()
      g = (labels - jax.nn.sigmoid(scores)) * live * lr  # -lr * dloss/dscore.
      d_out = g[..., None] * hidden[:, None]           # [B, T, D]
      d_hidden = _einsum('bt,btd->bd', g, out)
      d_ctx = d_hidden[:, None] * back[..., None] * cmask
      n = live[:, 0].sum()
    else:
      scores = _einsum('bcd,btd->bct', ctx, out)       # [B, 2W, T]
      live = cmask * tmask[:, None]
      logit = jnp.where(labels[:, None] > 0, scores, -scores)
      loss = -(_log_sigmoid(logit) * live).sum()
      g = (labels[:, None] - jax.nn.sigmoid(scores)) * live * lr
      d_ctx = _einsum('bct,btd->bcd', g, out)
      d_out = _einsum('bct,bcd->btd', g, ctx)
      n = (cmask[..., 0] * target_mask[:, :1]).sum()
    d = self.dim
    return loss, n, {'input': (contexts.reshape(-1), d_ctx.reshape(-1, d)),
                     'output': (words.reshape(-1), d_out.reshape(-1, d))}

  # ---- the fast path for negative sampling: one segment of the stream at a time.

  def segment_noise(self, rng, rows, size, noise_cdf):
    """The random draws of `rows` segments of `size` centers: reduced windows
    [rows, size] (the dynamic window, b ~ U{1..window}) and the shared negatives
    [rows, K] (segment_updates), for a whole step at once. Drawn per segment,
    inside the loop over rounds, they would put six small loops (threefry's
    rounds, the noise search) in every round, each a kernel launch on a GPU."""
    window_rng, noise_rng = jax.random.split(rng)
    reduced = jax.random.randint(window_rng, (rows, size), 1, self.window + 1)
    if not self.negative:  # hierarchical softmax draws no noise.
      return reduced, jnp.zeros((rows, 0), jnp.int32)
    u = jax.random.uniform(noise_rng, (rows, self.shared_negatives))
    negatives = jnp.minimum(jnp.searchsorted(noise_cdf, u), self.vocab_size - 1)
    return reduced, negatives.astype(jnp.int32)

  def segment_updates(self, params, tokens, sentence, valid, reduced, negatives, lr,
                      center_mask=None):
    """Negative sampling over one segment [L + 2W] without per-window copies.

    Each stream position's input vector is gathered once; the window sums are
    shifted adds of that [L + 2W, D] array, and the gradient of every position is
    accumulated the same way, so a segment costs one gather and one scatter-add
    per position (plus one per center on the output side). The segment's
    negatives are shared: `shared_negatives` draws, each weighted
    negative / shared_negatives, so the expected objective is word2vec's
    (negative draws per prediction) with less variance, and the negative
    scores are one matrix product (Ji et al. 2016 share them the same way).
    Those products are most of a CBOW step's arithmetic, so fewer draws make
    it faster. reduced [L] and negatives [K] are the segment's draws (segment_noise).
    Unlike the C tool, a negative equal to the center is not skipped.
    center_mask [L + 2W] (default: valid) limits which middle positions are
    centers; the others still serve as context.
    Returns (loss sum, predictions, updates) as loss_and_updates does.
    """
    w, k = self.window, self.shared_negatives
    size = tokens.shape[0] - 2 * w
    offsets = [o for o in range(-w, w + 1) if o]
    center_ok = valid[w:w + size] & (True if center_mask is None else center_mask[w:w + size])
    masks = self.window_mask(sentence, valid, reduced, center_ok).astype(jnp.float32)
    # Materialized once: otherwise XLA fuses the mask arithmetic into every [L, D]
    # consumer and redoes it per vector element (CBOW steps were 6x slower).
    masks = jax.lax.optimization_barrier(masks)
    x = params['input'][tokens]                                  # [L + 2W, D]
    u = params['output'][tokens[w:w + size]]                     # [L, D]
    negatives = negatives.astype(tokens.dtype)
    nv = params['output'][negatives]                             # [K, D]
    weight = self.negative / k
    shifted = lambda a, o: a[w + o:w + o + size]                 # positions c + o, c centers.

    if self.cbow:
      count = masks.sum(0)
      scale, back = self._cbow_scales(count)
      live = (count > 0).astype(jnp.float32)
      hidden = sum(m[:, None] * shifted(x, o) for m, o in zip(masks, offsets)) * scale[:, None]
      pos = (hidden * u).sum(-1)
      neg = _mm(hidden, nv.T)                                    # [L, K]
      g_pos = (1.0 - jax.nn.sigmoid(pos)) * live * lr
      g_neg = -jax.nn.sigmoid(neg) * (live * weight * lr)[:, None]
      loss = -(_log_sigmoid(pos) * live).sum() - weight * (
          _log_sigmoid(-neg) * live[:, None]).sum()
      d_u = g_pos[:, None] * hidden
      d_nv = _mm(g_neg.T, hidden)
      d_hidden = (g_pos[:, None] * u + _mm(g_neg, nv)) * back[:, None]
      # Stream position p gets m_o[c] * d_hidden[c] from each center c = p - W - o: slices
      # of one padded array, summed in one pass rather than ten in-place slice updates
      # (the same values, as the masks are 0 or 1).
      padded = jnp.pad(d_hidden, ((2 * w, 2 * w), (0, 0)))
      d_x = sum(jnp.pad(m, (w + o, w - o))[:, None] * padded[w - o:w - o + size + 2 * w]
                for m, o in zip(masks, offsets))
      n = live.sum()
    else:
      # d_x by in-place slice updates: summed as CBOW's is, its products (not 0/1 masks)
      # would round differently and move skip-gram's parameters, for ~3.5% of a step.
      uses = jnp.zeros(x.shape[0])                               # windows each position is in.
      loss = 0.0
      d_u = jnp.zeros_like(u)
      d_x = jnp.zeros_like(x)
      for m, o in zip(masks, offsets):
        xo = shifted(x, o)
        pos = (xo * u).sum(-1)
        g = (1.0 - jax.nn.sigmoid(pos)) * m * lr
        loss -= (_log_sigmoid(pos) * m).sum()
        d_u += g[:, None] * xo
        d_x = d_x.at[w + o:w + o + size].add(g[:, None] * u)
        uses = uses.at[w + o:w + o + size].add(m)
      neg = _mm(x, nv.T)                                         # [L + 2W, K]
      g_neg = -jax.nn.sigmoid(neg) * (uses * weight * lr)[:, None]
      loss -= weight * (_log_sigmoid(-neg) * uses[:, None]).sum()
      d_x += _mm(g_neg, nv)
      d_nv = _mm(g_neg.T, x)
      n = uses.sum()
    return loss, n, {'input': (tokens, d_x),
                     'output': (jnp.concatenate([tokens[w:w + size], negatives]),
                                jnp.concatenate([d_u, d_nv]))}

  @staticmethod
  def apply(params, updates):
    return {name: params[name].at[rows].add(deltas)
            for name, (rows, deltas) in updates.items()}


def huffman_tree(counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """word2vec's binary Huffman tree over the vocabulary: per word, the code bits
  and the inner-node ids (0 .. V-2, root first) of its path, padded; and lengths."""
  counts = np.asarray(counts)
  v = len(counts)
  if v < 2:
    return np.zeros((v, 1), np.int8), np.zeros((v, 1), np.int32), np.zeros(v, np.int32)
  heap = [(int(c), i) for i, c in enumerate(counts)]
  heapq.heapify(heap)
  parent, bit = np.zeros(2 * v - 1, np.int64), np.zeros(2 * v - 1, np.int8)
  nxt = v
  while len(heap) > 1:
    (c1, a), (c2, b) = heapq.heappop(heap), heapq.heappop(heap)
    parent[a], parent[b], bit[a], bit[b] = nxt, nxt, 0, 1
    heapq.heappush(heap, (c1 + c2, nxt))
    nxt += 1
  root = 2 * v - 2
  paths = []
  for i in range(v):
    codes, points, node = [], [], i
    while node != root:
      codes.append(bit[node])
      points.append(parent[node] - v)  # inner nodes v .. 2v-2 -> 0 .. v-2.
      node = parent[node]
    paths.append((codes[::-1], points[::-1]))
  max_len = max(len(c) for c, _ in paths)
  codes = np.zeros((v, max_len), np.int8)
  points = np.zeros((v, max_len), np.int32)
  lengths = np.zeros(v, np.int32)
  for i, (c, p) in enumerate(paths):
    codes[i, :len(c)], points[i, :len(p)], lengths[i] = c, p, len(c)
  return codes, points, lengths
