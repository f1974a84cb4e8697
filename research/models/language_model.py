"""A decoder-only Transformer language model (GPT-style), as pure functions.

- Pre-LN blocks of causal self-attention and a GELU feed-forward layer, built
  from research/models/transformer.py's Attention, FeedForward, dropout and
  residual pieces; a final layer norm.
- Learned positions, and input embeddings tied to the output layer.
- model.init: seqlab's initialization (the Transformer's: embeddings N(0, 1/d)
  scaled by sqrt(d) on the way in, LeCun-normal kernels), or GPT-2's (nanoGPT's):
  unscaled embeddings, every weight N(0, 0.02), each block's two residual
  outputs N(0, 0.02 / sqrt(2 layers)), biases zero.
- model.attention_impl: causal self-attention in XLA's einsums, or cuDNN's fused
  (flash) attention on an NVIDIA GPU in bfloat16.
- Sampling with a key/value cache: the prompt is encoded once (every layer's
  keys and values kept), then each new token costs one position until a row
  fills the context; after that each token recomputes the last `context`.
  Temperature, top-k and top-p (nucleus) sampling; temperature 0 is greedy.
  jit-compiled.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.errors import UserError
from research.layers import model_dtypes
from research.models import register, transformer


class Block(transformer.Sublayers):
  """One pre-LN block: x + Attn(LN(x)) with a causal mask, then x + FFN(LN(x))."""
  sizes: transformer.Sizes = transformer.Sizes()
  attention_block: int = 0  # queries a block of causal attention (0: all at once).

  def setup(self):
    s = self.sizes
    self.self_attention = s.attention('self_attention')
    self.feed_forward = s.feed_forward()
    self.norm1, self.norm2 = s.norm('norm1'), s.norm('norm2')

  def _feed_forward(self, x, train):
    return self.residual(x, lambda h: (self.feed_forward(h, train), None), self.norm2, train)[0]

  def __call__(self, x, train: bool = False):
    """x [B, T, D] -> (x, this layer's keys and values [B, T, H, d] for a cache)."""
    att = self.self_attention

    def attend(h):
      k, v = att.keys_values(h)
      return att.attend_causal(att.query(h), k, v, self.attention_block, train), (k, v)

    x, kv = self.residual(x, attend, self.norm1, train)
    return self._feed_forward(x, train), kv

  def cached(self, x, cache, index):
    """One position per row: x [B, 1, D] at positions index [B]; cache (k, v) [B, L, H, d]
    gets each row's new entry."""
    att = self.self_attention
    positions = jnp.arange(cache[0].shape[1])

    def attend(h):
      k_new, v_new = att.keys_values(h)
      at = (positions[None, :] == index[:, None])[:, :, None, None]
      k = jnp.where(at, k_new.astype(cache[0].dtype), cache[0])
      v = jnp.where(at, v_new.astype(cache[1].dtype), cache[1])
      visible = (positions[None, :] <= index[:, None])[:, None, :]
      return att.attend(att.query(h), k, v, visible)[0], (k, v)

    x, cache = self.residual(x, attend, self.norm1, False)
    return self._feed_forward(x, False), cache


class TransformerLM(nn.Module):
  vocab_size: int
  sizes: transformer.Sizes = transformer.Sizes()
  num_layers: int = 6
  context: int = 256
  attention_block: int = 0

  def setup(self):
    s = self.sizes
    self.embed = s.embed(self.vocab_size, 'embed')
    self.position_table = transformer.position_table(self, 'learned', self.context, s)
    block = s.layer(Block, train_argnum=2)
    self.blocks = [block(True, s.dropout, s, self.attention_block, name=f'block_{i}') for i in range(self.num_layers)]
    self.final_norm = s.norm('final_norm')

  def logits(self, x):
    return self.embed.attend(self.final_norm(x))  # tied to the input embeddings.

  def __call__(self, tokens, train: bool = False):
    """tokens [B, T] -> (logits [B, T, V], every layer's keys and values)."""
    x = transformer.embed_tokens(self, self.embed, self.position_table, tokens, 0, train)
    caches = []
    for block in self.blocks:
      x, kv = block(x, train)
      caches.append(kv)
    return self.logits(x), caches

  def step(self, tokens, index, caches):
    """tokens [B] at positions index [B] -> (logits [B, V], caches)."""
    x = transformer.scale_embeddings(self.embed(tokens)[:, None], self.sizes)
    x = x + self.position_table[index][:, None].astype(x.dtype)
    new = []
    for block, cache in zip(self.blocks, caches):
      x, cache = block.cached(x, cache, index)
      new.append(cache)
    return self.logits(x)[:, 0], new


def sample_logits(rng, logits, temperature: float, top_k: int, top_p: float):
  """A token per row of logits [B, V]: greedy at temperature 0, else softmax sampling
  at `temperature` over the top_k most likely (0: all) whose mass reaches top_p."""
  logits = logits.astype(jnp.float32)
  if temperature <= 0:
    return jnp.argmax(logits, -1).astype(jnp.int32)
  logits = logits / temperature
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    ordered = jnp.sort(logits, -1)[:, ::-1]
    mass = jnp.cumsum(jax.nn.softmax(ordered, -1), -1)
    # The smallest logit kept: the first at which the mass before it is below top_p.
    keep = jnp.sum(mass - jax.nn.softmax(ordered, -1) < top_p, -1, keepdims=True)
    cutoff = jnp.take_along_axis(ordered, keep - 1, -1)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  return jax.random.categorical(rng, logits).astype(jnp.int32)


INITS = ('seqlab', 'gpt2')
ACTIVATIONS = ('gelu', 'gelu_exact')  # model.activation: GELU's tanh form (GPT-2's), or erf's.
GPT2_STD = 0.02
GPT2_STREAM = 2  # the redraw's key: fold_in(key, 1) is the train state's.


def gpt2_initialization(params, rng, num_layers: int):
  """params redrawn as GPT-2 (and nanoGPT) draws them: biases zero, layer-norm scales
  one, each block's residual outputs (attention's `out`, the feed-forward's `outer`)
  N(0, 0.02 / sqrt(2 layers)), every other array N(0, 0.02). Boxes (logical axes)
  are kept."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(rng, len(leaves))
  drawn = []
  for (path, leaf), key in zip(leaves, keys):
    names = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
    if names[-1] == 'bias':
      drawn.append(jnp.zeros_like(leaf))
    elif names[-1] == 'scale':
      drawn.append(jnp.ones_like(leaf))
    else:
      residual = names[-2:-1] in (['out'], ['outer'])
      std = GPT2_STD / np.sqrt(2 * num_layers) if residual else GPT2_STD
      drawn.append(std * jax.random.normal(key, leaf.shape, leaf.dtype))
  return treedef.unflatten(drawn)


@register('transformer_lm', 'language_model')
@dataclasses.dataclass(frozen=True)
class LanguageModel:
  """Pure functions of (params, tokens) around the TransformerLM module."""
  module: TransformerLM
  init_scheme: str = 'seqlab'  # model.init: seqlab | gpt2

  @property
  def context(self) -> int:
    return self.module.context

  def init(self, rng):
    # XLA's attention: the same parameters, and an init that runs on any backend.
    module = transformer.with_attention(self.module, 'xla')
    params = module.init(rng, jnp.zeros((1, self.context), jnp.int32))['params']
    if self.init_scheme == 'gpt2':
      params = gpt2_initialization(params, jax.random.fold_in(rng, GPT2_STREAM),
                                   self.module.num_layers)
    return params

  def forward(self, params, tokens, *, rng=None, train=False):
    """Logits [B, T, V] of each next token."""
    rngs = {'dropout': rng} if train else {}
    return self.module.apply({'params': params}, tokens, train, rngs=rngs)[0]

  def generate(self, params, prompt, length, rng, *, num_tokens: int, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, never=()):
    """Continues each row of prompt [B, context] (its first length[b] tokens; the
    rest is padding) by num_tokens tokens [B, num_tokens]. The prompt is encoded in
    one pass, then each token costs one position of a key/value cache. Once a row
    fills the context, every later token is predicted from the last `context`
    tokens, the whole window recomputed (learned positions cannot slide a cache).
    The ids in `never` are never sampled."""
    batch, context = prompt.shape
    if num_tokens == 0:
      return jnp.zeros((batch, 0), jnp.int32)
    logits, caches = self.module.apply({'params': params}, prompt)
    last = jnp.take_along_axis(logits, (length - 1)[:, None, None], axis=1)[:, 0]
    keys = jax.random.split(rng, num_tokens)
    sample = lambda key, logits: sample_logits(
        key, logits.at[:, jnp.array(never, jnp.int32)].set(-jnp.inf) if never else logits,
        temperature, top_k, top_p)
    first = sample(keys[0], last)
    rows = jnp.arange(batch)

    def cached(token, window, at, caches):
      return self.module.apply({'params': params}, token, at, caches, method=TransformerLM.step)

    def recomputed(token, window, at, caches):
      logits = self.module.apply({'params': params}, window)[0]
      return jnp.take_along_axis(logits, at[:, None, None], axis=1)[:, 0], caches

    def body(carry, key):
      token, window, filled, caches = carry  # token: sampled, not yet in the window.
      room = filled < context
      shifted = jnp.where(room[:, None], window, jnp.roll(window, -1, axis=1))
      at = jnp.minimum(filled, context - 1)  # the token's position in the window.
      window = shifted.at[rows, at].set(token)
      logits, caches = jax.lax.cond(jnp.all(room), cached, recomputed, token, window, at, caches)
      token = sample(key, logits)
      return (token, window, jnp.minimum(filled + 1, context), caches), token

    _, rest = jax.lax.scan(body, (first, prompt, length, caches), keys[1:])
    return jnp.concatenate([first[:, None], rest.T], axis=1)

  @classmethod
  def from_config(cls, cfg, vocab_size: int, context: int):
    d, h = cfg.model_dim, cfg.num_heads
    if d % h:
      raise UserError(f'model.model_dim={d} is not divisible by model.num_heads={h}')
    if cfg.init not in INITS:
      raise UserError(f'model.init={cfg.init!r} is not an initialization seqlab has; use '
                      + ', '.join(INITS))
    dtype, param_dtype = model_dtypes(cfg)
    attention = transformer.check_attention(cfg.attention_impl, dtype,
                                            cfg.attention_dropout, d // h)
    sizes = transformer.Sizes(model_dim=d, ff_dim=cfg.ff_dim, num_heads=h, qk_dim=d // h,
                              v_dim=d // h, dropout=cfg.dropout,
                              attention_dropout=cfg.attention_dropout, relu_dropout=0.0,
                              pre_ln=True, activation=cfg.get('activation', 'gelu'), dtype=dtype,
                              param_dtype=param_dtype, remat=cfg.remat, attention_impl=attention,
                              norm_epsilon=cfg.norm_epsilon, embed_scale=cfg.init != 'gpt2')
    return cls(TransformerLM(vocab_size, sizes, cfg.num_layers, context,
                             cfg.attention_block), cfg.init)

