"""Encoder-decoders without attention: the whole source is one context vector.

- Sutskever, Vinyals and Le 2014: a multi-layer LSTM encoder whose final
  states start a multi-layer LSTM decoder; optionally the source is reversed.
- Cho et al. 2014: a GRU encoder whose final state is the context vector c; the
  decoder starts from c and sees it at every step and in the output layer.

Both expose the pieces research.models.encoder_decoder runs as pure functions.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from research import layers
from research.data.vocab import PAD
from research.errors import UserError
from research.models import register
from research.models.encoder_decoder import EncoderDecoder, RecurrentPieces


class SutskeverLSTM(RecurrentPieces):
  src_vocab_size: int
  tgt_vocab_size: int
  embed_dim: int = 256
  hidden_dim: int = 512        # the context size: the decoder starts from these states.
  num_layers: int = 2
  reverse_source: bool = True
  dropout: float = 0.0
  tie_embeddings: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = self.dtypes
    self.src_embed = layers.Embed(self.src_vocab_size, self.embed_dim, name='src_embed', **kw)
    self.tgt_embed = layers.Embed(self.tgt_vocab_size, self.embed_dim, name='tgt_embed', **kw)
    self.encoder = [layers.LSTM(self.hidden_dim, name=f'encoder_{i}', **kw)
                    for i in range(self.num_layers)]
    self.decoder = [layers.LSTMCell(self.hidden_dim, name=f'decoder_{i}', **kw)
                    for i in range(self.num_layers)]
    self.make_output()
    self.drop = nn.Dropout(self.dropout)

  def encode(self, src, train: bool = False):
    mask = src != PAD
    x = self.drop(self.src_embed(src), deterministic=not train)
    if self.reverse_source:  # "reversing the source sentences" (section 3.3).
      x = layers.reverse_padded(x, mask)
    finals = []
    for i, layer in enumerate(self.encoder):
      x, final = layer(x, mask)
      finals.append(final)
      if i + 1 < len(self.encoder):
        x = self.drop(x, deterministic=not train)
    return None, None, mask, tuple(finals)

  def step(self, carry, y_embedded, encoded):
    x, new = y_embedded, []
    for cell, state in zip(self.decoder, carry):
      state = cell(state, cell.project_inputs(x))
      new.append(state)
      x = state[0]
    return tuple(new), x, jnp.zeros(encoded[2].shape, x.dtype)  # no attention.


class ChoGRU(RecurrentPieces):
  src_vocab_size: int
  tgt_vocab_size: int
  embed_dim: int = 256
  hidden_dim: int = 512        # the context vector's size.
  dropout: float = 0.0
  tie_embeddings: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    kw = self.dtypes
    self.src_embed = layers.Embed(self.src_vocab_size, self.embed_dim, name='src_embed', **kw)
    self.tgt_embed = layers.Embed(self.tgt_vocab_size, self.embed_dim, name='tgt_embed', **kw)
    self.encoder = layers.GRU(self.hidden_dim, name='encoder', **kw)
    self.decoder = layers.GRUCell(self.hidden_dim, name='decoder', **kw)
    self.make_output()
    self.drop = nn.Dropout(self.dropout)

  def encode(self, src, train: bool = False):
    mask = src != PAD
    _, context = self.encoder(self.drop(self.src_embed(src), deterministic=not train), mask)
    # The decoder state starts at c; c itself rides along in the carry.
    return None, None, mask, (context, context)

  def step(self, carry, y_embedded, encoded):
    state, context = carry
    x = jnp.concatenate([y_embedded, context], axis=-1)  # c at every step.
    state = self.decoder(state, self.decoder.project_inputs(x))
    features = jnp.concatenate([state, y_embedded, context], axis=-1)  # and in the output.
    return (state, context), features, jnp.zeros(encoded[2].shape, state.dtype)


RNNS = ('lstm', 'gru_context')


@register('rnn_seq2seq', 'translation')
class Seq2Seq(EncoderDecoder):
  """Sutskever's LSTM or Cho's GRU, as pure functions of (params, inputs)."""

  @classmethod
  def from_config(cls, cfg, src_vocab_size: int, tgt_vocab_size: int):
    rnn = cfg.rnn
    common = dict(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
                  embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim, dropout=cfg.dropout,
                  tie_embeddings=cfg.tie_embeddings)
    common['dtype'], common['param_dtype'] = layers.model_dtypes(cfg)
    if rnn == 'lstm':
      return cls(SutskeverLSTM(num_layers=cfg.num_layers,
                               reverse_source=cfg.reverse_source, **common))
    if rnn == 'gru_context':
      return cls(ChoGRU(**common))
    raise UserError(f'unknown model.rnn {rnn!r}; use {", ".join(RNNS)}')
