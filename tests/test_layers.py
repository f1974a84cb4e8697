import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from research import layers
from research.data.vocab import PAD
from research.models.rnn_attention import RNNSearch, Seq2Seq


def _attention_inputs(batch=3, src_len=5, dim=4):
  rng = np.random.default_rng(0)
  query = jnp.asarray(rng.normal(size=(batch, dim)), jnp.float32)
  keys = jnp.asarray(rng.normal(size=(batch, src_len, dim)), jnp.float32)
  lengths = np.array([5, 3, 1])[:batch]
  mask = jnp.asarray(np.arange(src_len)[None, :] < lengths[:, None])
  return query, keys, mask


def test_additive_attention_shapes_and_normalization():
  query, keys, mask = _attention_inputs()
  attn = layers.AdditiveAttention(6)
  params = attn.init(jax.random.PRNGKey(0), query, keys, keys, mask)
  context, weights = attn.apply(params, query, keys, keys, mask)
  assert context.shape == (3, 4)
  assert weights.shape == (3, 5)
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)


def test_padded_source_positions_get_exactly_zero_weight():
  query, keys, mask = _attention_inputs()
  attn = layers.AdditiveAttention(6)
  params = attn.init(jax.random.PRNGKey(0), query, keys, keys, mask)
  context, weights = attn.apply(params, query, keys, keys, mask)
  assert np.all(np.asarray(weights)[~np.asarray(mask)] == 0.0)
  assert np.all(np.asarray(weights)[np.asarray(mask)] > 0.0)
  # Huge keys and values at padded positions change nothing at all.
  poisoned = jnp.where(mask[..., None], keys, 1e6)
  context_p, weights_p = attn.apply(params, query, poisoned, poisoned, mask)
  np.testing.assert_array_equal(weights_p, weights)
  np.testing.assert_array_equal(context_p, context)


def test_fully_masked_row_is_zero_not_nan():
  weights = layers.masked_softmax(jnp.zeros((1, 4)), jnp.zeros((1, 4), bool))
  assert np.all(np.asarray(weights) == 0.0)


def test_attention_gradients_match_finite_differences():
  with jax.enable_x64(True):
    query, keys, mask = _attention_inputs()
    query, keys = query.astype(jnp.float64), keys.astype(jnp.float64)
    attn = layers.AdditiveAttention(6)
    params = attn.init(jax.random.PRNGKey(0), query, keys, keys, mask)
    params = jax.tree.map(lambda p: p.astype(jnp.float64), params)

    def f(params, query, keys):
      context, weights = attn.apply(params, query, keys, keys, mask)
      return (context ** 2).sum() + (weights * jnp.arange(5.0)).sum()

    check_grads(f, (params, query, keys), order=1, modes=['rev'], atol=1e-6, rtol=1e-6)


def test_gru_gradients_match_finite_differences():
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 3)), jnp.float64)
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    gru = layers.GRU(5)
    params = jax.tree.map(lambda p: p.astype(jnp.float64),
                          gru.init(jax.random.PRNGKey(0), x, mask))
    f = lambda params, x: sum((o ** 2).sum() for o in gru.apply(params, x, mask))
    check_grads(f, (params, x), order=1, modes=['rev'], atol=1e-6, rtol=1e-6)


def test_gru_padding_keeps_state_in_both_directions():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 6, 3)), jnp.float32)
  mask = jnp.array([[1] * 6, [1, 1, 1, 0, 0, 0]], bool)
  for reverse in (False, True):
    gru = layers.GRU(4, reverse=reverse)
    params = gru.init(jax.random.PRNGKey(0), x, mask)
    outputs, final = gru.apply(params, x, mask)
    assert outputs.shape == (2, 6, 4) and final.shape == (2, 4)
    # The padded sequence equals the same sequence run alone at its true length.
    short_out, short_final = gru.apply(params, x[1:, :3], mask[1:, :3])
    np.testing.assert_allclose(outputs[1, :3], short_out[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final[1], short_final[0], rtol=1e-5, atol=1e-6)


def test_seq2seq_shapes_and_greedy_decode():
  model = Seq2Seq(RNNSearch(src_vocab_size=11, tgt_vocab_size=7, embed_dim=4, encoder_dim=5,
                            decoder_dim=6, attention_dim=3))
  src = jnp.array([[5, 6, 7, PAD], [8, 9, PAD, PAD]], jnp.int32)
  tgt_in = jnp.array([[1, 4, 5], [1, 6, PAD]], jnp.int32)
  params = model.init(jax.random.PRNGKey(0), src, tgt_in)
  logits, weights = model.forward(params, src, tgt_in)
  assert logits.shape == (2, 3, 7)
  assert weights.shape == (2, 3, 4)
  assert np.all(np.asarray(weights)[1, :, 2:] == 0.0)
  tokens, dec_weights = model.greedy_decode(params, src, max_len=5)
  assert tokens.shape == (2, 5) and dec_weights.shape == (2, 5, 4)
  # Greedy decoding's first step equals teacher forcing's first step.
  np.testing.assert_array_equal(tokens[:, 0], np.argmax(logits[:, 0], -1))


def _tiny_model():
  model = Seq2Seq(RNNSearch(src_vocab_size=11, tgt_vocab_size=9, embed_dim=4, encoder_dim=5,
                            decoder_dim=6, attention_dim=3))
  src = jnp.array([[5, 6, 7, PAD], [8, 9, PAD, PAD], [4, PAD, PAD, PAD]], jnp.int32)
  params = model.init(jax.random.PRNGKey(3), src, jnp.ones((3, 2), jnp.int32))
  # Sharpen the output layer so hypotheses differ clearly.
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x * 8 if 'output' in jax.tree_util.keystr(p) else x, params)
  return model, params, src


def _sequence_log_prob(model, params, src, tokens):
  """log p(tokens | src) under teacher forcing, up to and including </s>."""
  from research.data.vocab import BOS, EOS
  tgt_in = jnp.concatenate([jnp.full_like(tokens[:, :1], BOS), tokens[:, :-1]], axis=1)
  logits, _ = model.forward(params, src, tgt_in)
  logp = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], -1)[..., 0]
  ended = jnp.cumsum(tokens == EOS, axis=1) - (tokens == EOS)
  return (logp * (ended == 0) * (tokens != PAD)).sum(-1)


def test_beam_of_one_equals_greedy():
  model, params, src = _tiny_model()
  greedy_tokens, greedy_attn = model.greedy_decode(params, src, max_len=6)
  beam_tokens, _, beam_attn = model.beam_search(params, src, max_len=6, beam_size=1, alpha=0.0)
  np.testing.assert_array_equal(beam_tokens, greedy_tokens)
  np.testing.assert_allclose(beam_attn, greedy_attn, atol=1e-6)


def test_beam_search_scores_are_model_log_probs_and_beat_greedy():
  model, params, src = _tiny_model()
  greedy_tokens, _ = model.greedy_decode(params, src, max_len=6)
  tokens, scores, attention = model.beam_search(params, src, max_len=6, beam_size=4, alpha=0.0)
  assert tokens.shape == (3, 6) and scores.shape == (3,) and attention.shape == (3, 6, 4)
  # With no length penalty the score is exactly the model's log-probability.
  np.testing.assert_allclose(scores, _sequence_log_prob(model, params, src, tokens), atol=1e-4)
  # A wider beam never finds a worse hypothesis than greedy (both finished here).
  greedy_lp = _sequence_log_prob(model, params, src, greedy_tokens)
  assert np.all(np.asarray(scores) >= np.asarray(greedy_lp) - 1e-4)
  # Padded source positions get no attention in any decoded step.
  assert np.all(np.asarray(attention)[1, :, 2:] == 0.0)
