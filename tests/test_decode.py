"""Decoding against exhaustive search on a toy model whose next-token
distribution depends on the whole prefix."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import decode
from research.data.vocab import EOS

VOCAB, TABLE = 6, 101
LOGITS = 3 * jax.random.normal(jax.random.PRNGKey(0), (TABLE, VOCAB))


def _start(params, src):
  del params
  return src, jnp.zeros(src.shape[0], jnp.int32) + src[:, 0]  # the prefix hash.


CALLS = []


def _step(params, context, carry, tokens):
  del params
  jax.debug.callback(lambda: CALLS.append(1))  # counts decoding steps.
  log_probs = decode._never_special(jax.nn.log_softmax(LOGITS[carry % TABLE]))
  return (carry * 7 + tokens + 1) % 100003, log_probs, jnp.zeros(context.shape, jnp.float32)


def _exhaustive(first, max_len, alpha):
  """The best (tokens, score) over every sequence: ended by </s>, or cut at max_len."""
  best = (None, -np.inf)
  words = [EOS] + list(range(3, VOCAB))
  for length in range(1, max_len + 1):
    for seq in itertools.product(words, repeat=length):
      if EOS in seq[:-1] or (seq[-1] != EOS and length < max_len):
        continue
      h, logp, prev = first, 0.0, 1  # the hash of the source, then BOS.
      for tok in seq:
        _, lp, _ = _step(None, jnp.zeros((1, 1)), jnp.array([h]), jnp.array([prev]))
        lp = np.asarray(lp[0])
        logp += lp[tok]
        h = (h * 7 + prev + 1) % 100003
        prev = tok
      score = logp / float(decode.length_penalty(length, alpha))
      if score > best[1]:
        best = (seq, score)
  return best


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_beam_search_wide_enough_is_exact(alpha):
  src = jnp.array([[5], [17], [42]])
  max_len = 4
  tokens, scores, _ = jax.jit(lambda s: decode.beam_search(
      _start, _step, None, s, beam_size=64, max_len=max_len, alpha=alpha))(src)
  for row in range(len(src)):
    seq, score = _exhaustive(int(src[row, 0]), max_len, alpha)
    got = [int(t) for t in tokens[row] if t != 0]
    assert got == list(seq), (row, got, seq)
    np.testing.assert_allclose(scores[row], score, rtol=1e-5)


def test_both_decoders_stop_once_nothing_can_change():
  """A model that ends every sentence after about three words."""
  def eos_soon(params, context, carry, tokens):
    carry_next, log_probs, attention = _step(params, context, carry, tokens)
    boost = jnp.where(carry > 60, 20.0, 0.0)[:, None] * (jnp.arange(VOCAB) == EOS)
    return carry_next, decode._never_special(jax.nn.log_softmax(log_probs + boost)), attention
  src = jnp.array([[5], [17]])
  for decoder in (lambda: decode.greedy(_start, eos_soon, None, src, max_len=40),
                  lambda: decode.beam_search(_start, eos_soon, None, src, beam_size=4,
                                             max_len=40, alpha=0.6)):
    CALLS.clear()
    tokens = jax.block_until_ready(decoder()[0])
    ended = [int(np.flatnonzero(np.asarray(r) == EOS)[0]) for r in tokens]
    assert max(ended) < 6 and len(CALLS) < 15, (ended, len(CALLS))


def test_greedy_stops_after_every_row_ended_and_pads():
  src = jnp.array([[5], [17], [42], [7]])
  tokens, attention = decode.greedy(_start, _step, None, src, max_len=12)
  for row in range(len(src)):
    seq = np.asarray(tokens[row])
    ends = np.flatnonzero(seq == EOS)
    if len(ends):
      assert np.all(seq[ends[0] + 1:] == 0) and np.all(attention[row, ends[0] + 1:] == 0)
    # Each token is the argmax given the prefix.
    h, prev = int(src[row, 0]), 1
    for tok in seq[:ends[0] + 1 if len(ends) else len(seq)]:
      _, lp, _ = _step(None, jnp.zeros((1, 1)), jnp.array([h]), jnp.array([prev]))
      assert tok == int(jnp.argmax(lp[0]))
      h, prev = (h * 7 + prev + 1) % 100003, int(tok)
