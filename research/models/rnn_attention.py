"""Attention encoder-decoders over a bidirectional GRU encoder.

- RNNsearch (Bahdanau, Cho and Bengio 2014): the decoder attends with its
  previous state (additive scores), then updates its GRU.
- Luong, Pham and Manning 2015 global attention: the decoder updates its GRU
  first, attends with the new state (dot, general or concat scores), and feeds
  the attentional vector tanh(W_c [c_t; h_t]) to the next step (input feeding).

The modules only define the pieces (encode, one decoder step, output layer);
the time loops are the pure functions of research.models.encoder_decoder.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from research import layers
from research.data.vocab import PAD
from research.errors import UserError
from research.models import register
from research.models.encoder_decoder import EncoderDecoder, RecurrentPieces


class RNNSearch(RecurrentPieces):
  src_vocab_size: int
  tgt_vocab_size: int
  embed_dim: int = 64
  encoder_dim: int = 128     # per direction.
  decoder_dim: int = 128
  attention_dim: int = 128
  readout_dim: int = 0       # >0: Bahdanau's deep output, a maxout layer before the softmax.
  dropout: float = 0.0
  tie_embeddings: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = self.dtypes
    self.src_embed = layers.Embed(self.src_vocab_size, self.embed_dim, name='src_embed', **kw)
    self.tgt_embed = layers.Embed(self.tgt_vocab_size, self.embed_dim, name='tgt_embed', **kw)
    self.forward_rnn = layers.GRU(self.encoder_dim, name='encoder_forward', **kw)
    self.backward_rnn = layers.GRU(self.encoder_dim, reverse=True, name='encoder_backward', **kw)
    self.bridge = nn.Dense(self.decoder_dim, name='bridge', **kw)
    self.attention = self.make_attention()
    self.decoder = layers.GRUCell(self.decoder_dim, name='decoder', **kw)
    if self.readout_dim:
      self.readout = nn.Dense(2 * self.readout_dim, name='readout', **kw)
    self.make_output()
    self.drop = nn.Dropout(self.dropout)

  def make_attention(self):
    return layers.AdditiveAttention(self.attention_dim, name='attention', **self.dtypes)

  def encode(self, src, train: bool = False):
    """src [B, S] -> (encoder states [B, S, 2E], keys [B, S, A], mask, s0 [B, H])."""
    mask = src != PAD
    x = self.drop(self.src_embed(src), deterministic=not train)
    fwd, fwd_final = self.forward_rnn(x, mask)
    bwd, bwd_final = self.backward_rnn(x, mask)
    states = jnp.concatenate([fwd, bwd], axis=-1)
    initial = jnp.tanh(self.bridge(jnp.concatenate([fwd_final, bwd_final], axis=-1)))
    initial = initial.astype(jnp.float32)  # the decoder's state stays float32.
    return states, self.attention.project_keys(states), mask, initial

  def step(self, state, y_embedded, encoded):
    """One decoder step: attend with the previous state, then update the GRU."""
    states, keys, mask, _ = encoded
    context, weights = self.attention.attend(state, keys, states, mask)
    x = jnp.concatenate([y_embedded, context], axis=-1)
    state = self.decoder(state, self.decoder.project_inputs(x))
    features = jnp.concatenate([state, context, y_embedded], axis=-1)
    return state, features, weights

  def project(self, features, train: bool = False):
    features = self.drop(features, deterministic=not train)
    if self.readout_dim:  # maxout with pools of 2 (Bahdanau et al. 2014, appendix A.2.2).
      pairs = self.readout(features).reshape(features.shape[:-1] + (self.readout_dim, 2))
      features = pairs.max(-1)
    return self.logits(features)


class LuongSeq2Seq(RNNSearch):
  """Luong global attention with input feeding; the rest as in RNNSearch."""
  score: str = 'general'

  def setup(self):
    super().setup()
    self.combine = nn.Dense(self.decoder_dim, use_bias=False, name='combine', **self.dtypes)

  def make_attention(self):
    # general scores h_t . W h_s, so W maps keys to the decoder size.
    size = self.decoder_dim if self.score == 'general' else self.attention_dim
    return layers.LuongAttention(self.score, size, name='attention', **self.dtypes)

  def encode(self, src, train: bool = False):
    states, keys, mask, initial = super().encode(src, train)
    return states, keys, mask, (initial, jnp.zeros_like(initial))  # (state, attentional vector).

  def step(self, carry, y_embedded, encoded):
    states, keys, mask, _ = encoded
    state, feed = carry
    x = jnp.concatenate([y_embedded, feed], axis=-1)  # input feeding.
    state = self.decoder(state, self.decoder.project_inputs(x))
    context, weights = self.attention.attend(state, keys, states, mask)
    attentional = jnp.tanh(self.combine(jnp.concatenate([context, state], axis=-1)))
    attentional = attentional.astype(jnp.float32)  # carried: float32 like the state.
    return (state, attentional), attentional, weights


ATTENTION = ('bahdanau', 'luong_dot', 'luong_general', 'luong_concat')


@register('rnn_attention', 'translation')
class Seq2Seq(EncoderDecoder):
  """RNNsearch or Luong attention, as pure functions of (params, inputs)."""

  @classmethod
  def from_config(cls, cfg, src_vocab_size: int, tgt_vocab_size: int):
    attention = cfg.attention
    if attention not in ATTENTION:
      raise UserError(f'unknown model.attention {attention!r}; use {", ".join(ATTENTION)}')
    if attention == 'luong_dot' and 2 * cfg.encoder_dim != cfg.decoder_dim:
      raise UserError('model.attention=luong_dot needs model.decoder_dim == 2 * '
                      f'model.encoder_dim, got {cfg.decoder_dim} and {cfg.encoder_dim}')
    kwargs = dict(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
                  embed_dim=cfg.embed_dim, encoder_dim=cfg.encoder_dim,
                  decoder_dim=cfg.decoder_dim, attention_dim=cfg.attention_dim,
                  readout_dim=cfg.readout_dim, dropout=cfg.dropout,
                  tie_embeddings=cfg.tie_embeddings)
    kwargs['dtype'], kwargs['param_dtype'] = layers.model_dtypes(cfg)
    if attention == 'bahdanau':
      return cls(RNNSearch(**kwargs))
    return cls(LuongSeq2Seq(score=attention.split('_')[1], **kwargs))
