"""RNNsearch (Bahdanau, Cho and Bengio 2014): a bidirectional GRU encoder and a
GRU decoder that attends over every encoder state at each step.

The module only defines the pieces (encode, one decoder step, output layer).
The time loops are pure functions of the parameters (`Seq2Seq` below), shared
by teacher-forced training and greedy decoding.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from research import decode, layers
from research.data.vocab import PAD


class RNNSearch(nn.Module):
  src_vocab_size: int
  tgt_vocab_size: int
  embed_dim: int = 64
  encoder_dim: int = 128     # per direction.
  decoder_dim: int = 128
  attention_dim: int = 128
  dropout: float = 0.0

  def setup(self):
    self.src_embed = nn.Embed(self.src_vocab_size, self.embed_dim, name='src_embed')
    self.tgt_embed = nn.Embed(self.tgt_vocab_size, self.embed_dim, name='tgt_embed')
    self.forward_rnn = layers.GRU(self.encoder_dim, name='encoder_forward')
    self.backward_rnn = layers.GRU(self.encoder_dim, reverse=True, name='encoder_backward')
    self.bridge = nn.Dense(self.decoder_dim, name='bridge')
    self.attention = layers.AdditiveAttention(self.attention_dim, name='attention')
    self.decoder = layers.GRUCell(self.decoder_dim, name='decoder')
    self.output = nn.Dense(self.tgt_vocab_size, name='output')
    self.drop = nn.Dropout(self.dropout)

  def encode(self, src, train: bool = False):
    """src [B, S] -> (encoder states [B, S, 2E], keys [B, S, A], mask, s0 [B, H])."""
    mask = src != PAD
    x = self.drop(self.src_embed(src), deterministic=not train)
    fwd, fwd_final = self.forward_rnn(x, mask)
    bwd, bwd_final = self.backward_rnn(x, mask)
    states = jnp.concatenate([fwd, bwd], axis=-1)
    initial = jnp.tanh(self.bridge(jnp.concatenate([fwd_final, bwd_final], axis=-1)))
    return states, self.attention.project_keys(states), mask, initial

  def embed_targets(self, tokens, train: bool = False):
    return self.drop(self.tgt_embed(tokens), deterministic=not train)

  def step(self, state, y_embedded, encoded):
    """One decoder step: attend with the previous state, then update the GRU."""
    states, keys, mask, _ = encoded
    context, weights = self.attention.attend(state, keys, states, mask)
    x = jnp.concatenate([y_embedded, context], axis=-1)
    state = self.decoder(state, self.decoder.project_inputs(x))
    features = jnp.concatenate([state, context, y_embedded], axis=-1)
    return state, features, weights

  def project(self, features, train: bool = False):
    return self.output(self.drop(features, deterministic=not train))

  def __call__(self, src, tgt_in):
    """Used only to create every parameter (one decoder step is enough)."""
    encoded = self.encode(src)
    _, features, _ = self.step(encoded[3], self.embed_targets(tgt_in[:, 0]), encoded)
    return self.project(features)


@dataclasses.dataclass(frozen=True)
class Seq2Seq:
  """Pure functions of (params, inputs) around an encoder-decoder module."""
  module: nn.Module

  @classmethod
  def from_config(cls, cfg, src_vocab_size: int, tgt_vocab_size: int):
    return cls(RNNSearch(
        src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
        embed_dim=cfg.embed_dim, encoder_dim=cfg.encoder_dim,
        decoder_dim=cfg.decoder_dim, attention_dim=cfg.attention_dim,
        dropout=cfg.dropout))

  def init(self, rng, src, tgt_in):
    return self.module.init(rng, src, tgt_in)['params']

  def forward(self, params, src, tgt_in, *, rng=None, train=False):
    """Teacher forcing: tgt_in [B, T] -> (logits [B, T, V], attention [B, T, S])."""
    variables = {'params': params}
    rngs = {'dropout': rng} if train else {}
    m = self.module
    encoded = m.apply(variables, src, train, method=m.encode,
                      rngs=_rngs(rngs, 0))
    y = m.apply(variables, tgt_in, train, method=m.embed_targets, rngs=_rngs(rngs, 1))

    def step(state, y_t):
      state, features, weights = m.apply(variables, state, y_t, encoded, method=m.step)
      return state, (features, weights)

    _, (features, weights) = jax.lax.scan(step, encoded[3], jnp.swapaxes(y, 0, 1))
    features, weights = jnp.swapaxes(features, 0, 1), jnp.swapaxes(weights, 0, 1)
    logits = m.apply(variables, features, train, method=m.project, rngs=_rngs(rngs, 2))
    return logits, weights

  def start(self, params, src):
    """Decoding interface (research.decode): (context, carry) for a source batch."""
    encoded = self.module.apply({'params': params}, src, method=self.module.encode)
    return encoded, encoded[3]

  def step(self, params, context, state, tokens):
    """Decoding interface: one step from the previous tokens [B]."""
    variables, m = {'params': params}, self.module
    y = m.apply(variables, tokens, method=m.embed_targets)
    state, features, weights = m.apply(variables, state, y, context, method=m.step)
    log_probs = jax.nn.log_softmax(m.apply(variables, features, method=m.project))
    return state, log_probs, weights

  def greedy_decode(self, params, src, max_len: int):
    """(tokens [B, T], attention [B, T, S]); tokens after </s> are padding."""
    return decode.greedy(self.start, self.step, params, src, max_len)

  def beam_search(self, params, src, max_len: int, beam_size: int, alpha: float = 0.6):
    """(tokens [B, T], scores [B], attention [B, T, S]) of the best beam."""
    return decode.beam_search(self.start, self.step, params, src, beam_size=beam_size,
                              max_len=max_len, alpha=alpha)


def _rngs(rngs, i):
  return {k: jax.random.fold_in(v, i) for k, v in rngs.items()}
