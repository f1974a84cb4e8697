"""The Transformer (Vaswani et al. 2017): encoder and decoder stacks of attention.

- The encoder is N identical layers (no shared weights), each self-attention
  and a position-wise feed-forward layer; the decoder's N layers add
  encoder-decoder attention between the two.
- Multi-head scaled dot-product attention with padding and causal masks;
  d_k and d_v are free (Table 3 rows A and B), d_model / h by default.
- Residual connections with layer norm after each sublayer (post-LN, the
  paper) or before it (pre-LN, with a final norm on each stack).
- Sinusoidal or learned positions; embeddings scaled by sqrt(d_model).
- Embedding sharing: 'none', 'output' (target embedding = output layer) or
  'all' (one table for source, target and output; needs a joint vocabulary).
- Mixed precision (model.dtype, flax's dtype and param_dtype): attention
  logits, softmax and layer-norm statistics stay float32. Parameters name their
  logical axes ('embed', 'heads', 'kv', 'mlp', 'vocab', 'length') for
  research.parallel's sharding rules. model.remat rematerializes each layer.
- model.attention_impl: XLA's einsums, or on an NVIDIA GPU in bfloat16 cuDNN's
  fused attention for whole sequences (training, scoring and encoding the
  source; decoder steps and attention maps keep XLA's, which returns weights).

The modules define the pieces; TransformerModel holds the pure functions
(forward with teacher forcing; start/step with a key/value cache for
research.decode), as EncoderDecoder does for the recurrent models.
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import decode
from research.data.vocab import PAD
from research.layers import NEG_INF, Embed, logical, model_dtypes
from research.models import register
from research.errors import UserError

CAUSAL = 'causal'  # attend's mask for causal self-attention over a whole sequence.


def _mix(x):
  """lowbias32 (C. Wellons): a 32-bit integer hash with full avalanche."""
  x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
  x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def dropout(module, x, rate: float, train: bool):
  """Inverted dropout whose mask hashes (key, element index).

  Why not jax.random.bernoulli: on CPU its threefry bits for the ~24M masked
  elements of a bench step cost over a fifth of the step, while this hash is a
  few integer ops that XLA fuses into the consumer. The mask is still a pure
  function of the module's 'dropout' key, so runs stay reproducible.
  """
  if not train or not rate:
    return x
  seeds = jax.random.bits(module.make_rng('dropout'), (2,), jnp.uint32)
  index = jax.lax.iota(jnp.uint32, x.size).reshape(x.shape)
  bits = _mix(_mix(index ^ seeds[0]) + seeds[1])
  keep = bits >= jnp.uint32(round(rate * 2.0 ** 32))
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def sinusoids(length: int, dim: int) -> np.ndarray:
  """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (section 3.5)."""
  pos = np.arange(length)[:, None]
  rates = 1.0 / 10000 ** (np.arange(0, dim, 2) / dim)
  table = np.zeros((length, dim), np.float32)
  table[:, 0::2] = np.sin(pos * rates)
  table[:, 1::2] = np.cos(pos * rates)[:, :dim // 2]
  return table


_KERNEL = nn.initializers.lecun_normal()
_ZEROS = nn.initializers.zeros_init()


class Attention(nn.Module):
  """Multi-head scaled dot-product attention (section 3.2)."""
  num_heads: int
  qk_dim: int        # d_k, per head.
  v_dim: int         # d_v, per head.
  model_dim: int
  dropout: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  implementation: str = 'xla'  # xla | cudnn (check_attention): see attend and attend_causal.

  def setup(self):
    h, kw = self.num_heads, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    heads = lambda size, name: nn.DenseGeneral(
        (h, size), kernel_init=logical(_KERNEL, 'embed', 'heads', 'kv'),
        bias_init=logical(_ZEROS, 'heads', 'kv'), name=name, **kw)
    self.query = heads(self.qk_dim, 'query')
    self.key = heads(self.qk_dim, 'key')
    self.value = heads(self.v_dim, 'value')
    self.out = nn.DenseGeneral(self.model_dim, axis=(-2, -1),
                               kernel_init=logical(_KERNEL, 'heads', 'kv', 'embed'),
                               bias_init=logical(_ZEROS, 'embed'), name='out', **kw)

  def keys_values(self, memory):
    return self.key(memory), self.value(memory)

  def __call__(self, x, memory, mask, train: bool = False, fused: bool = False):
    """x [B, T, D] attends over memory [B, S, D]; mask as attend's."""
    k, v = self.keys_values(memory)
    return self.attend(self.query(x), k, v, mask, train, fused)

  def attend(self, q, k, v, mask, train: bool = False, fused: bool = False):
    """q [B, T, H, dk], k [B, S, H, dk], v [B, S, H, dv] -> ([B, T, D], weights [B, H, T, S]).
    mask: [B, 1|T, S] (True = visible), or CAUSAL. fused (whole sequences, no weights
    wanted) lets implementation 'cudnn' run cuDNN's fused attention, for CAUSAL or a
    key-padding mask [B, 1, S] of right-padded rows; its weights are then None."""
    if fused and self.implementation == 'cudnn' and (mask is CAUSAL or mask.shape[1] == 1):
      return self.out(self._fused(q, k, v, mask)), None
    if mask is CAUSAL:
      mask = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))[None]
    scores = jnp.einsum('bthd,bshd->bhts', q, k,
                        preferred_element_type=jnp.promote_types(q.dtype, jnp.float32))
    scores = jnp.where(mask[:, None], scores / np.sqrt(self.qk_dim).astype(np.float32), NEG_INF)
    weights = jax.nn.softmax(scores, axis=-1)  # float32 logits and softmax in any dtype.
    mixed = jnp.einsum('bhts,bshd->bthd',
                       dropout(self, weights, self.dropout, train).astype(v.dtype), v)
    return self.out(mixed), weights

  def attend_causal(self, q, k, v, block: int, train: bool = False):
    """Causal self-attention over q, k, v [B, T, H, d] -> [B, T, D], query block by
    query block, each seeing only the keys up to its end: the masked half of the
    scores is never computed, and each block's softmax stays small enough for the
    cache. The same function as attend with a lower-triangular mask. With
    implementation 'cudnn', cuDNN's fused (flash) attention instead: the scores
    never reach device memory."""
    if self.implementation == 'cudnn':
      return self.out(self._fused(q, k, v, CAUSAL))
    t = q.shape[1]
    if block <= 0 or block >= t or t % block:
      return self.attend(q, k, v, CAUSAL, train)[0]
    parts = []
    for end in range(block, t + 1, block):
      visible = (jnp.arange(end - block, end)[:, None] >= jnp.arange(end)[None, :])[None]
      parts.append(self._mix(q[:, end - block:end], k[:, :end], v[:, :end], visible, train))
    return self.out(jnp.concatenate(parts, axis=1))

  def _fused(self, q, k, v, mask):
    """cuDNN's fused attention under CAUSAL or a key-padding mask [B, 1, S]: each row's
    keys are its first `length` (at least one, so that an all-padding row stays finite;
    its loss weight is zero)."""
    if mask is CAUSAL:
      return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation='cudnn')
    lengths = jnp.maximum(mask[:, 0].sum(-1), 1).astype(jnp.int32)
    return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths,
                                        implementation='cudnn')

  def _mix(self, q, k, v, mask, train):
    scores = jnp.einsum('bthd,bshd->bhts', q, k,
                        preferred_element_type=jnp.promote_types(q.dtype, jnp.float32))
    scores = jnp.where(mask[:, None], scores / np.sqrt(self.qk_dim).astype(np.float32), NEG_INF)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum('bhts,bshd->bthd',
                      dropout(self, weights, self.dropout, train).astype(v.dtype), v)


ATTENTION = ('xla', 'cudnn', 'auto')


def with_attention(module, implementation: str):
  """A copy of a module holding `sizes` (Transformer, TransformerLM) whose attention
  runs `implementation`; the parameters are the same."""
  return module.clone(sizes=dataclasses.replace(module.sizes, attention_impl=implementation))


def attention_platform() -> str:
  """'cuda' on an NVIDIA GPU that cuDNN's fused attention runs on (compute capability
  8.0 or later), else the backend's name: 'gpu' (ROCm, or an older NVIDIA card), 'cpu',
  'tpu'."""
  device = jax.devices()[0]
  if device.platform != 'gpu':
    return device.platform
  try:  # CUDA reports '9.0' and the like; ROCm a gfx name.
    return 'cuda' if float(device.compute_capability) >= 8.0 else 'gpu'
  except (AttributeError, TypeError, ValueError):
    return 'gpu'


def check_attention(name: str, dtype, attention_dropout: float, head_dim: int,
                    platform: str | None = None, v_dim: int | None = None) -> str:
  """model.attention_impl, checked: 'xla' (einsums, any device), 'cudnn' (fused,
  where cuDNN takes it: an NVIDIA GPU of compute capability 8.0 or later, 16-bit
  compute, no dropout on the weights, query, key and value heads of one size, a
  multiple of 8 up to 128), or 'auto' (cudnn where it fits, else xla). `platform`
  is attention_platform()'s. Returns the kernel: 'xla' or 'cudnn'."""
  if name not in ATTENTION:
    raise UserError(f'model.attention_impl={name!r} is not a kernel seqlab has; use '
                    + ', '.join(ATTENTION))
  platform = platform or attention_platform()
  v_dim = head_dim if v_dim is None else v_dim
  fits = (platform == 'cuda' and jnp.dtype(dtype).itemsize == 2 and not attention_dropout
          and head_dim == v_dim and head_dim % 8 == 0 and head_dim <= 128)
  if name == 'auto':
    return 'cudnn' if fits else 'xla'
  if name == 'cudnn' and not fits:
    raise UserError('model.attention_impl=cudnn needs an NVIDIA GPU of compute capability '
                    '8.0 or later, model.dtype bfloat16, '
                    'model.attention_dropout=0 and query, key and value heads of one size, a '
                    f'multiple of 8 up to 128 (here: {platform}, {jnp.dtype(dtype).name}, '
                    f'dropout {attention_dropout}, head sizes {head_dim} and {v_dim}); use xla '
                    'or auto')
  return name


class FeedForward(nn.Module):
  """FFN(x) = max(0, x W1 + b1) W2 + b2 (section 3.3)."""
  ff_dim: int
  model_dim: int
  dropout: float = 0.0
  activation: str = 'relu'  # relu (the paper) | gelu (GPT-2's tanh form) | gelu_exact (erf)
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = nn.Dense(self.ff_dim, kernel_init=logical(_KERNEL, 'embed', 'mlp'),
                 bias_init=logical(_ZEROS, 'mlp'), name='inner', **kw)(x)
    if self.activation == 'relu':
      h = nn.relu(h)
    elif self.activation in ('gelu', 'gelu_exact'):
      h = nn.gelu(h, approximate=self.activation == 'gelu')
    else:
      raise ValueError(f'unknown activation {self.activation!r}: relu, gelu or gelu_exact')
    h = dropout(self, h, self.dropout, train)
    return nn.Dense(self.model_dim, kernel_init=logical(_KERNEL, 'mlp', 'embed'),
                    bias_init=logical(_ZEROS, 'embed'), name='outer', **kw)(h)


class Sublayers(nn.Module):
  """A layer's residual blocks: LN(x + Drop(f(x))) post-LN, x + Drop(f(LN(x))) pre-LN.
  fn(x) -> (out, extra); residual returns (x', extra)."""
  pre_ln: bool
  dropout: float

  def residual(self, x, fn, norm, train):
    if self.pre_ln:
      out, extra = fn(norm(x))
      return x + self._drop(out, train), extra
    out, extra = fn(x)
    return norm(x + self._drop(out, train)), extra

  def _drop(self, y, train):
    return dropout(self, y, self.dropout, train)


def scale_embeddings(x, sizes):
  return x * jnp.asarray(np.sqrt(sizes.model_dim), x.dtype) if sizes.embed_scale else x


def position_table(module, positions: str, max_len: int, sizes):
  """Learned positions (a parameter) or the paper's sinusoids, [max_len, d]."""
  if positions == 'learned':
    return module.param('position_embeddings',
                        logical(nn.initializers.normal(0.02), 'length', 'embed'),
                        (max_len, sizes.model_dim), sizes.param_dtype)
  return jnp.asarray(sinusoids(max_len, sizes.model_dim))


def embed_tokens(module, table, positions, tokens, offset, train):
  """sqrt(d) * E[tokens] + positions[offset:], with dropout (section 3.4); E[tokens]
  unscaled where sizes.embed_scale is False."""
  x = scale_embeddings(table(tokens), module.sizes)
  pos = jax.lax.dynamic_slice_in_dim(positions, offset, tokens.shape[1])
  return dropout(module, x + pos[None].astype(x.dtype), module.sizes.dropout, train)


@dataclasses.dataclass(frozen=True)
class Sizes:
  model_dim: int = 512
  ff_dim: int = 2048
  num_heads: int = 8
  qk_dim: int = 64
  v_dim: int = 64
  dropout: float = 0.1            # on sublayer outputs and embedding sums (the paper's P_drop).
  attention_dropout: float = 0.0  # on attention weights (tensor2tensor, nn.Transformer).
  relu_dropout: float = 0.0       # inside the feed-forward layer (tensor2tensor, nn.Transformer).
  pre_ln: bool = False
  activation: str = 'relu'
  dtype: Any = jnp.float32        # the compute dtype (model.dtype).
  param_dtype: Any = jnp.float32  # the parameters' (model.param_dtype).
  remat: bool = False             # rematerialize each layer in the backward pass.
  attention_impl: str = 'xla'     # attention's kernel: xla | cudnn (check_attention).
  norm_epsilon: float = 1e-6      # flax's default; GPT-2 and Marian use 1e-5.
  embed_scale: bool = True        # input embeddings times sqrt(d) (section 3.4); GPT-2's are not.

  @property
  def dtypes(self) -> dict:
    return {'dtype': self.dtype, 'param_dtype': self.param_dtype}

  def attention(self, name):
    return Attention(self.num_heads, self.qk_dim, self.v_dim, self.model_dim,
                     self.attention_dropout, name=name, implementation=self.attention_impl,
                     **self.dtypes)

  def feed_forward(self):
    return FeedForward(self.ff_dim, self.model_dim, self.relu_dropout, self.activation,
                       name='feed_forward', **self.dtypes)

  def norm(self, name):
    """Layer norm computing its statistics in float32 (flax does in any dtype)."""
    return nn.LayerNorm(epsilon=self.norm_epsilon,
                        scale_init=logical(nn.initializers.ones_init(), 'embed'),
                        bias_init=logical(_ZEROS, 'embed'), name=name, **self.dtypes)

  def embed(self, vocab_size: int, name: str):
    init = nn.initializers.normal(self.model_dim ** -0.5)  # so that sqrt(d) * E has unit scale.
    return Embed(vocab_size, self.model_dim, embedding_init=logical(init, 'vocab', 'embed'),
                    name=name, **self.dtypes)

  def layer(self, cls, method: str = '__call__', train_argnum: int = 3):
    """cls, or cls rematerialized in `method`, whose argument `train_argnum` (counting
    self as 0) is the static train flag."""
    if not self.remat:
      return cls
    return nn.remat(cls, static_argnums=(train_argnum,), methods=[method])


class EncoderLayer(Sublayers):
  sizes: Sizes = Sizes()

  def setup(self):
    s = self.sizes
    self.self_attention = s.attention('self_attention')
    self.feed_forward = s.feed_forward()
    self.norm1, self.norm2 = s.norm('norm1'), s.norm('norm2')

  def __call__(self, x, mask, train: bool = False):
    x, weights = self.residual(x, lambda h: self.self_attention(h, h, mask, train, fused=True),
                               self.norm1, train)
    x, _ = self.residual(x, lambda h: (self.feed_forward(h, train), None), self.norm2, train)
    return x, weights


class DecoderLayer(Sublayers):
  sizes: Sizes = Sizes()

  def setup(self):
    s = self.sizes
    self.self_attention = s.attention('self_attention')
    self.cross_attention = s.attention('cross_attention')
    self.feed_forward = s.feed_forward()
    self.norm1, self.norm2, self.norm3 = (s.norm(f'norm{i}') for i in (1, 2, 3))

  def __call__(self, y, self_attend, cross_kv, src_mask, train: bool = False,
               fused: bool = False):
    """self_attend(h) -> (out, weights) is full causal attention or a cached step."""
    y, self_w = self.residual(y, self_attend, self.norm1, train)
    y, cross_w = self.residual(
        y, lambda h: self.cross_attention.attend(self.cross_attention.query(h), *cross_kv,
                                                 src_mask[:, None, :], train, fused),
        self.norm2, train)
    y, _ = self.residual(y, lambda h: (self.feed_forward(h, train), None), self.norm3, train)
    return y, (self_w, cross_w)

  def full(self, y, cross_kv, src_mask, train: bool = False):
    attend = lambda h: self.self_attention(h, h, CAUSAL, train, fused=True)
    return self(y, attend, cross_kv, src_mask, train, fused=True)

  def cached(self, y, cache, index, cross_kv, src_mask):
    """One position y [B, 1, D] at `index`; cache (k, v) [B, L, H, d] gets its row."""
    att = self.self_attention

    def attend(h):
      k_new, v_new = att.keys_values(h)
      k = jax.lax.dynamic_update_slice_in_dim(cache[0], k_new.astype(cache[0].dtype), index, 1)
      v = jax.lax.dynamic_update_slice_in_dim(cache[1], v_new.astype(cache[1].dtype), index, 1)
      visible = (jnp.arange(k.shape[1]) <= index)[None, None, :]
      out, weights = att.attend(att.query(h), k, v, visible)
      return out, (weights, (k, v))

    y, ((_, cache), cross_w) = self(y, attend, cross_kv, src_mask)
    return y, cache, cross_w


class Transformer(nn.Module):
  src_vocab_size: int
  tgt_vocab_size: int
  sizes: Sizes = Sizes()
  num_layers: int = 6               # N in the encoder.
  num_decoder_layers: int = 6       # N in the decoder.
  positions: str = 'sinusoidal'     # sinusoidal | learned
  max_len: int = 128
  share_embeddings: str = 'none'    # none | output | all

  def setup(self):
    s = self.sizes
    self.tgt_embed = s.embed(self.tgt_vocab_size, 'tgt_embed')
    if self.share_embeddings == 'all':
      self.src_embed = self.tgt_embed
    else:
      self.src_embed = s.embed(self.src_vocab_size, 'src_embed')
    if self.share_embeddings == 'none':
      self.output = nn.Dense(self.tgt_vocab_size, kernel_init=logical(_KERNEL, 'embed', 'vocab'),
                             bias_init=logical(_ZEROS, 'vocab'), name='output', **s.dtypes)
    self.position_table = position_table(self, self.positions, self.max_len, s)
    encoder_layer, decoder_layer = s.layer(EncoderLayer), s.layer(DecoderLayer, 'full', 4)
    self.encoder_layers = [encoder_layer(s.pre_ln, s.dropout, s, name=f'encoder_{i}')
                           for i in range(self.num_layers)]
    self.decoder_layers = [decoder_layer(s.pre_ln, s.dropout, s, name=f'decoder_{i}')
                           for i in range(self.num_decoder_layers)]
    if s.pre_ln:
      self.encoder_norm = s.norm('encoder_norm')
      self.decoder_norm = s.norm('decoder_norm')

  def embed(self, table, tokens, offset, train):
    return embed_tokens(self, table, self.position_table, tokens, offset, train)

  def encode(self, src, train: bool = False):
    """src [B, S] -> (memory [B, S, D], mask [B, S], self-attention weights per layer)."""
    mask = src != PAD
    x = self.embed(self.src_embed, src, 0, train)
    weights = []
    for layer in self.encoder_layers:
      x, w = layer(x, mask[:, None, :], train)
      weights.append(w)
    if self.sizes.pre_ln:
      x = self.encoder_norm(x)
    return x, mask, weights

  def cross_keys_values(self, memory):
    """Each decoder layer's encoder-decoder keys and values, computed once per sentence."""
    return [layer.cross_attention.keys_values(memory) for layer in self.decoder_layers]

  def logits(self, y):
    if self.sizes.pre_ln:
      y = self.decoder_norm(y)
    if self.share_embeddings == 'none':
      return self.output(y)
    return self.tgt_embed.attend(y)

  def decode(self, tgt_in, memory, src_mask, train: bool = False):
    """Teacher forcing: (logits [B, T, V], [(self, cross) weights per layer])."""
    y = self.embed(self.tgt_embed, tgt_in, 0, train)
    weights = []
    for layer, kv in zip(self.decoder_layers, self.cross_keys_values(memory)):
      y, w = layer.full(y, kv, src_mask, train)
      weights.append(w)
    return self.logits(y), weights

  def decode_step(self, tokens, index, caches, cross_kv, src_mask):
    """tokens [B] at position `index` -> (logits [B, V], caches, cross weights [B, H, S])."""
    y = self.embed(self.tgt_embed, tokens[:, None], index, False)
    new_caches = []
    for layer, cache, kv in zip(self.decoder_layers, caches, cross_kv):
      y, cache, cross_w = layer.cached(y, cache, index, kv, src_mask)
      new_caches.append(cache)
    return self.logits(y)[:, 0], new_caches, cross_w[:, :, 0]

  def __call__(self, src, tgt_in):
    memory, mask, _ = self.encode(src)
    return self.decode(tgt_in, memory, mask)[0]


@register('transformer', 'translation')
@dataclasses.dataclass(frozen=True)
class TransformerModel:
  """Pure functions of (params, inputs) around the Transformer module."""
  module: Transformer
  kv_cache: bool = True

  def init(self, rng, src, tgt_in):
    # XLA's attention: the same parameters, and an init that runs on any backend.
    return self.unfused.init(rng, src, tgt_in)['params']

  def forward(self, params, src, tgt_in, *, rng=None, train=False):
    """(logits [B, T, V], cross-attention of the last layer, mean over heads [B, T, S])."""
    rngs = {'dropout': rng} if train else {}
    m = self.module

    def run(module):
      memory, mask, _ = module.encode(src, train)
      return module.decode(tgt_in, memory, mask, train)

    logits, weights = nn.apply(run, m)({'params': params}, rngs=rngs)
    cross = weights[-1][1]  # None from fused attention.
    return logits, None if cross is None else cross.mean(1)

  def attention_maps(self, params, src, tgt_in):
    """Every layer's weights per head: {'encoder_0/self': [B, H, S, S],
    'decoder_0/self': [B, H, T, T], 'decoder_0/cross': [B, H, T, S], ...}."""
    def run(module):
      memory, mask, enc = module.encode(src)
      return enc, module.decode(tgt_in, memory, mask)[1]

    enc, dec = nn.apply(run, self.unfused)({'params': params})
    maps = {f'encoder_{i}/self': w for i, w in enumerate(enc)}
    for i, (self_w, cross_w) in enumerate(dec):
      maps[f'decoder_{i}/self'], maps[f'decoder_{i}/cross'] = self_w, cross_w
    return maps

  @property
  def unfused(self) -> Transformer:
    """The module with XLA's attention, which has weights to return."""
    return with_attention(self.module, 'xla')

  # --- decoding (research.decode's start/step interface) ----------------------

  def start(self, params, src):
    def run(module):
      memory, mask, _ = module.encode(src)
      return (module.cross_keys_values(memory), mask, memory) if self.kv_cache else \
          (memory, mask)

    context = nn.apply(run, self.module)({'params': params})
    batch, m, s = src.shape[0], self.module, self.module.sizes
    index = jnp.zeros((batch,), jnp.int32)  # same for every row; kept per row for beam tiling.
    if self.kv_cache:
      caches = [(jnp.zeros((batch, m.max_len, s.num_heads, s.qk_dim), context[2].dtype),
                 jnp.zeros((batch, m.max_len, s.num_heads, s.v_dim), context[2].dtype))
                for _ in range(m.num_decoder_layers)]
      return context[:2], (caches, index)
    return context, (jnp.full((batch, m.max_len), PAD, jnp.int32), index)

  def step(self, params, context, carry, tokens):
    if not self.kv_cache:
      return self._step_uncached(params, context, carry, tokens)
    cross_kv, mask = context
    caches, index = carry

    def run(module):
      return module.decode_step(tokens, index[0], caches, cross_kv, mask)

    logits, caches, cross_w = nn.apply(run, self.module)({'params': params})
    return (caches, index + 1), jax.nn.log_softmax(logits.astype(jnp.float32)), cross_w.mean(1)

  def _step_uncached(self, params, context, carry, tokens):
    """Reruns the decoder over the whole prefix: the baseline the cache is measured against."""
    memory, mask = context
    prefix, index = carry
    prefix = jax.vmap(lambda p, i, t: p.at[i].set(t))(prefix, index, tokens)

    def run(module):
      return module.decode(prefix, memory, mask)

    logits, weights = nn.apply(run, self.unfused)({'params': params})
    take = lambda x: jnp.take_along_axis(x, index[:, None, None], axis=1)[:, 0]
    cross_w = weights[-1][1].mean(1)  # [B, T, S]
    return (prefix, index + 1), jax.nn.log_softmax(take(logits).astype(jnp.float32)), take(cross_w)

  def greedy_decode(self, params, src, max_len: int, never=()):
    self._check_length(max_len)
    return decode.greedy(self.start, self.step, params, src, max_len, never)

  def beam_search(self, params, src, max_len: int, beam_size: int, alpha: float = 0.6, never=()):
    self._check_length(max_len)
    return decode.beam_search(self.start, self.step, params, src, beam_size=beam_size,
                              max_len=max_len, alpha=alpha, never=never)

  def _check_length(self, max_len):
    if max_len > self.module.max_len:
      raise UserError(f'decoding {max_len} tokens needs model.max_len >= {max_len}, '
                      f'got {self.module.max_len}')

  def check_lengths(self, max_source_len: int, max_target_len: int):
    """Positions exist up to model.max_len: a clear error before any compiling."""
    longest = max(max_source_len, max_target_len)
    if longest > self.module.max_len:
      raise UserError(f'data.max_source_len/max_target_len up to {longest} need '
                      f'model.max_len >= {longest}, got {self.module.max_len}')

  @classmethod
  def from_config(cls, cfg, src_vocab_size: int, tgt_vocab_size: int):
    d, h = cfg.model_dim, cfg.num_heads
    if cfg.positions not in ('sinusoidal', 'learned'):
      raise UserError(f'unknown model.positions {cfg.positions!r}; use sinusoidal or learned')
    if cfg.share_embeddings not in ('none', 'output', 'all'):
      raise UserError(f'unknown model.share_embeddings {cfg.share_embeddings!r}; '
                      'use none, output or all')
    if cfg.share_embeddings == 'all' and src_vocab_size != tgt_vocab_size:
      raise UserError('model.share_embeddings=all needs one vocabulary for both sides; '
                      'set data.shared_vocab=True')
    if d % h and not (cfg.qk_dim and cfg.v_dim):
      raise UserError(f'model.model_dim={d} is not divisible by model.num_heads={h}; '
                      'set model.qk_dim and model.v_dim')
    dtype, param_dtype = model_dtypes(cfg)
    qk_dim, v_dim = cfg.qk_dim or d // h, cfg.v_dim or d // h
    attention = check_attention(cfg.attention_impl, dtype, cfg.attention_dropout,
                                qk_dim, v_dim=v_dim)
    sizes = Sizes(model_dim=d, ff_dim=cfg.ff_dim, num_heads=h, qk_dim=qk_dim, v_dim=v_dim,
                  dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
                  relu_dropout=cfg.relu_dropout, pre_ln=cfg.pre_ln,
                  dtype=dtype, param_dtype=param_dtype, remat=cfg.remat,
                  attention_impl=attention, norm_epsilon=cfg.norm_epsilon)
    module = Transformer(src_vocab_size, tgt_vocab_size, sizes, num_layers=cfg.num_layers,
                         num_decoder_layers=cfg.num_decoder_layers or cfg.num_layers,
                         positions=cfg.positions, max_len=cfg.max_len,
                         share_embeddings=cfg.share_embeddings)
    return cls(module, kv_cache=cfg.kv_cache)
