"""Pure functions of (params, inputs) around any recurrent encoder-decoder module.

The module exposes the pieces:
  encode(src, train) -> (states, keys, mask, initial carry)   (states/keys may be None)
  embed_targets(tokens, train) -> embeddings
  step(carry, y_embedded, encoded) -> (carry, features, attention [B, S])
  project(features, train) -> logits
and this class runs the time loops: teacher forcing for training, and the
start/step interface of research.decode for greedy and beam search.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from research import decode


class RecurrentPieces(nn.Module):
  """What the recurrent modules share. A subclass has the fields tgt_vocab_size,
  embed_dim, tie_embeddings, dtype and param_dtype; its setup defines tgt_embed and
  drop and calls make_output; it defines encode and step."""

  @property
  def dtypes(self) -> dict:
    return {'dtype': self.dtype, 'param_dtype': self.param_dtype}

  def make_output(self):
    """The softmax layer: its own weights, or the target embeddings, tied (Press and
    Wolf 2017) after a projection of the features to the embedding size."""
    if self.tie_embeddings:
      self.tie_projection = nn.Dense(self.embed_dim, name='tie_projection', **self.dtypes)
    else:
      self.output = nn.Dense(self.tgt_vocab_size, name='output', **self.dtypes)

  def logits(self, features):
    if self.tie_embeddings:
      return self.tgt_embed.attend(self.tie_projection(features))
    return self.output(features)

  def embed_targets(self, tokens, train: bool = False):
    return self.drop(self.tgt_embed(tokens), deterministic=not train)

  def project(self, features, train: bool = False):
    return self.logits(self.drop(features, deterministic=not train))

  def __call__(self, src, tgt_in):
    """Used only to create every parameter (one decoder step is enough)."""
    encoded = self.encode(src)
    _, features, _ = self.step(encoded[3], self.embed_targets(tgt_in[:, 0]), encoded)
    return self.project(features)


@dataclasses.dataclass(frozen=True)
class EncoderDecoder:
  module: nn.Module

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
    logits = m.apply(variables, features, method=m.project).astype(jnp.float32)
    log_probs = jax.nn.log_softmax(logits)
    return state, log_probs, weights

  def greedy_decode(self, params, src, max_len: int, never=()):
    """(tokens [B, T], attention [B, T, S]); tokens after </s> are padding."""
    return decode.greedy(self.start, self.step, params, src, max_len, never)

  def beam_search(self, params, src, max_len: int, beam_size: int, alpha: float = 0.6, never=()):
    """(tokens [B, T], scores [B], attention [B, T, S]) of the best beam."""
    return decode.beam_search(self.start, self.step, params, src, beam_size=beam_size,
                              max_len=max_len, alpha=alpha, never=never)


def _rngs(rngs, i):
  return {k: jax.random.fold_in(v, i) for k, v in rngs.items()}
