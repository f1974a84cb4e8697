"""Greedy and beam-search decoding for any encoder-decoder, as pure functions.

A model exposes two pure functions of its parameters:
  start(params, src) -> (context, carry)
      context: per-sentence tensors that never change while decoding (encoder
               states, projected keys, mask); carry: the decoder state.
  step(params, context, carry, tokens [B]) -> (carry, log_probs [B, V], attention [B, S])

Both decoders run under lax.while_loop, so they jit-compile once per shape,
and stop as soon as the remaining steps could not change the result. Leading axes of context and carry are the batch.
Neither emits <pad>, <s>, nor the ids in `never` (a vocabulary's never_emitted()).
"""
import jax
import jax.numpy as jnp

from research.data.vocab import BOS, EOS, PAD
from research.layers import NEG_INF


def greedy(start, step, params, src, max_len: int, never=()):
  """Feeds back the argmax token: (tokens [B, T], attention [B, T, S])."""
  context, carry = start(params, src)
  first = jnp.full((src.shape[0],), BOS, jnp.int32)

  batch = src.shape[0]

  def body(state):
    t, carry, token, done, tokens, attention = state
    carry, log_probs, attn = step(params, context, carry, token)
    token = jnp.argmax(_never_special(log_probs, never), -1).astype(jnp.int32)
    tokens = tokens.at[:, t].set(token)
    attention = attention.at[:, t].set(attn)
    return t + 1, carry, token, done | (token == EOS), tokens, attention

  # Stop once every row has ended: the steps after that would all be padding.
  _, carry, _, _, tokens, attention = jax.lax.while_loop(
      lambda state: (state[0] < max_len) & ~jnp.all(state[3]), body,
      (0, carry, first, jnp.zeros(batch, bool), jnp.full((batch, max_len), PAD, jnp.int32),
       jnp.zeros((batch, max_len, src.shape[1]))))
  after = _after_eos(tokens)
  return jnp.where(after, PAD, tokens), jnp.where(after[..., None], 0.0, attention)


def length_penalty(length, alpha: float):
  """Wu et al. 2016 (GNMT): ((5 + length) / 6) ** alpha; alpha=0 is no penalty."""
  return ((5.0 + length) / 6.0) ** alpha


def beam_search(start, step, params, src, *, beam_size: int, max_len: int, alpha: float = 0.6,
                never=()):
  """Returns the best hypothesis per sentence: (tokens [B, T], scores [B], attention [B, T, S]).

  Scores are log-probabilities divided by the GNMT length penalty. A finished
  hypothesis ends with </s>; hypotheses still live at max_len compete with the
  finished ones. With beam_size=1 the greedy path stays live, so the result
  scores at least as well as greedy decoding.
  """
  batch, k = src.shape[0], beam_size
  context, carry = start(params, src)
  tile = lambda x: jnp.repeat(x, k, axis=0)  # [B, ...] -> [B*K, ...], beams of a row adjacent.
  context, carry = jax.tree.map(tile, context), jax.tree.map(tile, carry)
  src_len = src.shape[1]

  live_scores = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1)), (batch, 1))  # [B, K]
  live_tokens = jnp.full((batch, k, max_len), PAD, jnp.int32)
  live_attn = jnp.zeros((batch, k, max_len, src_len))
  fin_scores = jnp.full((batch, k), NEG_INF)
  fin_tokens = jnp.full((batch, k, max_len), PAD, jnp.int32)
  fin_attn = jnp.zeros((batch, k, max_len, src_len))

  def body(state):
    t, carry, live_scores, live_tokens, live_attn, fin_scores, fin_tokens, fin_attn = state
    prev = jnp.where(t == 0, BOS, live_tokens[:, :, jnp.maximum(t - 1, 0)]).reshape(-1)
    carry, log_probs, attention = step(params, context, carry, prev)
    log_probs = _never_special(log_probs, never)
    vocab = log_probs.shape[-1]
    cand = (live_scores[..., None] + log_probs.reshape(batch, k, vocab)).reshape(batch, -1)
    top_scores, top_idx = jax.lax.top_k(cand, 2 * k)          # [B, 2K]
    origin, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
    gather = lambda x: jnp.take_along_axis(x, origin.reshape(origin.shape + (1,) * (x.ndim - 2)),
                                           axis=1)
    cand_tokens = gather(live_tokens).at[:, :, t].set(token)
    cand_attn = gather(live_attn).at[:, :, t].set(
        jnp.take_along_axis(attention.reshape(batch, k, -1), origin[..., None], axis=1))
    is_eos = token == EOS

    # Finished: the best K among the old finished and the candidates that just ended.
    normalized = jnp.where(is_eos, top_scores / length_penalty(t + 1.0, alpha), NEG_INF)
    all_scores = jnp.concatenate([fin_scores, normalized], axis=1)
    fin_scores, keep = jax.lax.top_k(all_scores, k)
    pick = lambda old, new: jnp.take_along_axis(
        jnp.concatenate([old, new], axis=1), keep.reshape(keep.shape + (1,) * (old.ndim - 2)),
        axis=1)
    fin_tokens, fin_attn = pick(fin_tokens, cand_tokens), pick(fin_attn, cand_attn)

    # Live: the best K candidates that did not end.
    live_scores, keep = jax.lax.top_k(jnp.where(is_eos, NEG_INF, top_scores), k)
    sel = lambda x: jnp.take_along_axis(x, keep.reshape(keep.shape + (1,) * (x.ndim - 2)), axis=1)
    live_tokens, live_attn = sel(cand_tokens), sel(cand_attn)
    rows = (jnp.arange(batch)[:, None] * k + jnp.take_along_axis(origin, keep, axis=1)).reshape(-1)
    carry = jax.tree.map(lambda x: x[rows], carry)
    return t + 1, carry, live_scores, live_tokens, live_attn, fin_scores, fin_tokens, fin_attn

  def running(state):
    """Stop early when no live hypothesis can still beat a row's best finished one:
    log-probabilities only fall, so a live score is at best itself over the
    largest length penalty. The result is the same as running all max_len steps."""
    t, live_scores, fin_scores = state[0], state[2], state[5]
    best_possible = live_scores[:, 0] / length_penalty(float(max_len), alpha)
    return (t < max_len) & ~jnp.all(fin_scores[:, 0] >= best_possible)

  state = (0, carry, live_scores, live_tokens, live_attn, fin_scores, fin_tokens, fin_attn)
  state = jax.lax.while_loop(running, body, state)
  _, _, live_scores, live_tokens, live_attn, fin_scores, fin_tokens, fin_attn = state
  # At max_len the live hypotheses stop too and compete with the finished ones.
  live_best = live_scores[:, 0] / length_penalty(float(max_len), alpha)
  use_finished = fin_scores[:, 0] >= live_best
  tokens = jnp.where(use_finished[:, None], fin_tokens[:, 0], live_tokens[:, 0])
  attention = jnp.where(use_finished[:, None, None], fin_attn[:, 0], live_attn[:, 0])
  scores = jnp.maximum(fin_scores[:, 0], live_best)
  return tokens, scores, attention


def _never_special(log_probs, never=()):
  """Decoders never emit <pad>, <s> or the ids in `never`."""
  return log_probs.at[:, jnp.array((PAD, BOS) + tuple(never))].set(NEG_INF)


def _after_eos(tokens):
  """True at the steps after the first </s> (those become padding)."""
  return (jnp.cumsum(tokens == EOS, axis=1) - (tokens == EOS)) > 0
