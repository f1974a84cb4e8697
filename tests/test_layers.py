import jax
import jax.numpy as jnp
import numpy as np
import pytest
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


def _assert_beam_of_one_is_at_least_greedy(model, params, src):
  greedy_tokens, _ = model.greedy_decode(params, src, max_len=6)
  tokens, scores, _ = model.beam_search(params, src, max_len=6, beam_size=1, alpha=0.0)
  np.testing.assert_allclose(scores, _sequence_log_prob(model, params, src, tokens), atol=1e-4)
  greedy_lp = _sequence_log_prob(model, params, src, greedy_tokens)
  assert np.all(np.asarray(scores) >= np.asarray(greedy_lp) - 1e-4)


def test_beam_of_one_scores_at_least_greedy():
  _assert_beam_of_one_is_at_least_greedy(*_tiny_model())


def test_beam_search_scores_are_model_log_probs_and_beat_greedy():
  model, params, src = _tiny_model()
  greedy_tokens, _ = model.greedy_decode(params, src, max_len=6)
  tokens, scores, attention = model.beam_search(params, src, max_len=6, beam_size=4, alpha=0.0)
  assert tokens.shape == (3, 6) and scores.shape == (3,) and attention.shape == (3, 6, 4)
  # With no length penalty the score is exactly the model's log-probability.
  np.testing.assert_allclose(scores, _sequence_log_prob(model, params, src, tokens), atol=1e-4)
  # Here the wider beam also beats greedy (not guaranteed in general, but true on this case).
  greedy_lp = _sequence_log_prob(model, params, src, greedy_tokens)
  assert np.all(np.asarray(scores) >= np.asarray(greedy_lp) - 1e-4)
  # Padded source positions get no attention in any decoded step.
  assert np.all(np.asarray(attention)[1, :, 2:] == 0.0)


@pytest.mark.parametrize('attention', ['luong_dot', 'luong_general', 'luong_concat'])
def test_luong_variants_shapes_masking_and_beam(attention):
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(
      attention=attention, embed_dim=4, encoder_dim=3, decoder_dim=6, attention_dim=5,
      readout_dim=0, dropout=0.0, tie_embeddings=False))
  model = Seq2Seq.from_config(cfg, 11, 9)
  src = jnp.array([[5, 6, 7, PAD], [8, 9, PAD, PAD]], jnp.int32)
  tgt_in = jnp.array([[1, 4, 5], [1, 6, 7]], jnp.int32)
  params = model.init(jax.random.PRNGKey(0), src, tgt_in)
  assert 'combine' in params  # the attentional layer of input feeding.
  logits, weights = model.forward(params, src, tgt_in)
  assert logits.shape == (2, 3, 9) and weights.shape == (2, 3, 4)
  assert np.all(np.asarray(weights)[1, :, 2:] == 0.0)
  np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, rtol=1e-5)
  _assert_beam_of_one_is_at_least_greedy(model, params, src)


def test_luong_dot_with_mismatched_sizes_is_a_clear_error():
  import ml_collections  # pylint: disable=g-import-not-at-top
  from research.errors import UserError  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(attention='luong_dot', embed_dim=4, encoder_dim=4,
                                       decoder_dim=6, attention_dim=5, dropout=0.0))
  with pytest.raises(UserError, match='decoder_dim == 2 \\* model.encoder_dim'):
    Seq2Seq.from_config(cfg, 11, 9)


def test_reverse_padded_keeps_padding_in_place():
  x = jnp.array([[1, 2, 3, 0], [4, 5, 0, 0]])
  np.testing.assert_array_equal(layers.reverse_padded(x, x != 0), [[3, 2, 1, 0], [5, 4, 0, 0]])


def test_lstm_padding_keeps_state():
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 5, 3)), jnp.float32)
  mask = jnp.array([[1] * 5, [1, 1, 0, 0, 0]], bool)
  lstm = layers.LSTM(4)
  params = lstm.init(jax.random.PRNGKey(0), x, mask)
  outputs, (h, c) = lstm.apply(params, x, mask)
  _, (h_short, c_short) = lstm.apply(params, x[1:, :2], mask[1:, :2])
  np.testing.assert_allclose(h[1], h_short[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(c[1], c_short[0], rtol=1e-5, atol=1e-6)
  assert outputs.shape == (2, 5, 4)


@pytest.mark.parametrize('rnn', ['lstm', 'gru_context'])
def test_models_without_attention(rnn):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from research.models import rnn_seq2seq  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(rnn=rnn, embed_dim=4, hidden_dim=6, num_layers=2,
                                       reverse_source=True, dropout=0.0, tie_embeddings=False))
  model = rnn_seq2seq.Seq2Seq.from_config(cfg, 11, 9)
  src = jnp.array([[5, 6, 7, PAD], [8, 9, PAD, PAD]], jnp.int32)
  tgt_in = jnp.array([[1, 4, 5], [1, 6, 7]], jnp.int32)
  params = model.init(jax.random.PRNGKey(0), src, tgt_in)
  logits, weights = model.forward(params, src, tgt_in)
  assert logits.shape == (2, 3, 9) and not np.any(weights)
  # The source only reaches the decoder through the context vector: padding
  # more cannot change the output.
  longer = jnp.concatenate([src, jnp.zeros((2, 3), jnp.int32)], axis=1)
  logits_longer, _ = model.forward(params, longer, tgt_in)
  np.testing.assert_allclose(logits_longer, logits, rtol=1e-5, atol=1e-6)
  _assert_beam_of_one_is_at_least_greedy(model, params, src)


@pytest.mark.parametrize('name,extra', [
    ('rnn_seq2seq', dict(rnn='lstm')), ('rnn_seq2seq', dict(rnn='gru_context')),
    ('rnn_attention', dict(attention='bahdanau', readout_dim=3)),
    ('rnn_attention', dict(attention='luong_general'))])
def test_tied_output_embeddings(name, extra):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from research.models import get, rnn_attention, rnn_seq2seq  # noqa: F401  pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(dict(
      embed_dim=4, hidden_dim=6, num_layers=1, reverse_source=False, encoder_dim=3,
      decoder_dim=6, attention_dim=5, dropout=0.0, tie_embeddings=True, readout_dim=0), **extra))
  model = get(name, 'translation').from_config(cfg, 11, 9)
  src = jnp.array([[5, 6, 7, PAD], [8, 9, PAD, PAD]], jnp.int32)
  tgt_in = jnp.array([[1, 4, 5], [1, 6, 7]], jnp.int32)
  params = model.init(jax.random.PRNGKey(0), src, tgt_in)
  assert 'output' not in params and params['tie_projection']['kernel'].shape[1] == 4
  logits, _ = model.forward(params, src, tgt_in)
  # The softmax weights are the target embeddings: change row 8, and only logit 8 moves.
  moved = jax.tree.map(lambda x: x, params)
  moved['tgt_embed']['embedding'] = params['tgt_embed']['embedding'].at[8].add(1.0)
  changed = np.abs(np.asarray(model.forward(moved, src, tgt_in)[0] - logits)) > 1e-6
  assert changed[..., 8].all() and not changed[..., :8].any()


def test_embed_matches_flax_in_float32_and_sums_bfloat16_gradients_in_float32():
  import flax.linen as nn
  ids = jnp.array([[1, 2, 2], [0, 2, 5]])
  ours, theirs = layers.Embed(6, 4), nn.Embed(6, 4)
  params = theirs.init(jax.random.PRNGKey(0), ids)
  for module in (ours, theirs):
    assert module.init(jax.random.PRNGKey(0), ids)['params']['embedding'].shape == (6, 4)
  np.testing.assert_array_equal(ours.apply(params, ids), theirs.apply(params, ids))
  grad = lambda m: jax.grad(lambda p: (m.apply(p, ids) * jnp.arange(24.0).reshape(2, 3, 4)).sum())
  np.testing.assert_array_equal(grad(ours)(params)['params']['embedding'],
                                grad(theirs)(params)['params']['embedding'])
  single = layers.Embed(1, 4)
  one = single.init(jax.random.PRNGKey(0), ids)
  np.testing.assert_array_equal(single.apply(one, ids), nn.Embed(1, 4).apply(one, ids))
  # In bfloat16 the rows come out in bfloat16, and the table's gradient is summed in
  # float32: 300 gradients of 1/4 each make 75 exactly, where a bfloat16 sum stalls
  # once its spacing (1/2 from 64 up) exceeds twice the step.
  bf16 = layers.Embed(6, 4, dtype=jnp.bfloat16)
  same = jnp.zeros((300,), jnp.int32)
  g = jax.grad(lambda p: (bf16.apply(p, same).astype(jnp.float32) / 4).sum())(params)
  assert bf16.apply(params, same).dtype == jnp.bfloat16
  assert g['params']['embedding'].dtype == jnp.float32
  np.testing.assert_array_equal(g['params']['embedding'][0], 75.0)
