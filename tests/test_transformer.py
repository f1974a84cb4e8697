"""The Transformer: masks, cached decoding, embedding sharing, and a tiny run."""
import collections
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import ROOT, launch
from research import config as config_lib
from research.errors import UserError
from research.models.transformer import TransformerModel, dropout, sinusoids, with_attention
from research.losses import smoothed_cross_entropy
from test_translation_data import _multi30k_dir

SRC = jnp.array([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14]])
TGT_IN = jnp.array([[1, 5, 6, 7, 0], [1, 8, 9, 10, 11]])


class _Shell(nn.Module):
  pass


def _model(vocab=(20, 20), **overrides):
  cfg = ml_collections.ConfigDict(dict(
      model_dim=16, num_heads=2, ff_dim=32, qk_dim=0, v_dim=0, dropout=0.1,
      attention_dropout=0.1, pre_ln=False, num_layers=2, num_decoder_layers=0,
      positions='sinusoidal', max_len=12, share_embeddings='none', norm_epsilon=1e-6,
      relu_dropout=0.0, attention_impl='xla', remat=False, kv_cache=True))
  cfg.update(overrides)
  model = TransformerModel.from_config(cfg, *vocab)
  return model, model.init(jax.random.PRNGKey(0), SRC, TGT_IN)


@pytest.mark.parametrize('eps', [0.0, 0.1])
def test_fused_cross_entropy_matches_autodiff_of_log_softmax(eps):
  logits = 3 * jax.random.normal(jax.random.PRNGKey(0), (3, 5, 11))
  targets = jax.random.randint(jax.random.PRNGKey(1), (3, 5), 0, 11)
  weights = jax.random.uniform(jax.random.PRNGKey(2), (3, 5))

  def reference(x):
    logp = jax.nn.log_softmax(x)
    nll = -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
    return (1 - eps) * nll - eps * logp.mean(-1)

  fused = lambda x: smoothed_cross_entropy(x, targets, eps)[0]
  np.testing.assert_allclose(fused(logits), reference(logits), rtol=1e-6)
  grad = lambda f: jax.grad(lambda x: (f(x) * weights).sum())(logits)
  np.testing.assert_allclose(grad(fused), grad(reference), atol=1e-6)
  margin = smoothed_cross_entropy(logits, targets, eps)[1]
  np.testing.assert_array_equal(margin >= 0, logits.argmax(-1) == targets)


def test_hashed_dropout_rate_scale_and_key_determinism():
  x = jnp.ones((64, 32, 256))

  def drop(seed, rate=0.1):
    return nn.apply(lambda m: dropout(m, x, rate, True), _Shell())(
        {}, rngs={'dropout': jax.random.PRNGKey(seed)})

  a, b, c = drop(0), drop(0), drop(1)
  np.testing.assert_array_equal(a, b)
  assert set(np.unique(a).tolist()) == {0.0, np.float32(1 / 0.9)}
  assert abs(float((a == 0).mean()) - 0.1) < 0.005
  assert float(((a == 0) & (c == 0)).mean()) < 0.015  # other keys, independent masks.
  assert abs(float((drop(0, 0.5) == 0).mean()) - 0.5) < 0.005


def test_sinusoids_match_the_formula():
  table = sinusoids(50, 8)
  assert table[7, 2] == pytest.approx(np.sin(7 / 10000 ** (2 / 8)), rel=1e-5)
  assert table[7, 3] == pytest.approx(np.cos(7 / 10000 ** (2 / 8)), rel=1e-5)


@pytest.mark.parametrize('pre_ln', [False, True])
def test_decoder_is_causal_and_source_padding_is_masked(pre_ln):
  model, params = _model(pre_ln=pre_ln)
  forward = jax.jit(model.forward)
  logits, _ = forward(params, SRC, TGT_IN)
  changed = TGT_IN.at[:, 3:].set(15)  # later target tokens must not change earlier outputs.
  moved, _ = forward(params, SRC, changed)
  np.testing.assert_allclose(moved[:, :3], logits[:, :3], atol=1e-5)
  assert not np.allclose(moved[:, 3:], logits[:, 3:])
  padded = jnp.pad(SRC, ((0, 0), (0, 3)))  # more padding changes nothing.
  np.testing.assert_allclose(forward(params, padded, TGT_IN)[0], logits, atol=1e-5)


@pytest.mark.parametrize('pre_ln,positions', [(False, 'sinusoidal'), (True, 'learned')])
def test_cached_decoding_matches_rerunning_the_prefix(pre_ln, positions):
  model, params = _model(pre_ln=pre_ln, positions=positions)
  uncached = TransformerModel(model.module, kv_cache=False)
  tokens, attention = model.greedy_decode(params, SRC, 10)
  tokens2, attention2 = uncached.greedy_decode(params, SRC, 10)
  np.testing.assert_array_equal(tokens, tokens2)
  np.testing.assert_allclose(attention, attention2, atol=1e-5)
  beam, scores, _ = model.beam_search(params, SRC, 10, 3)
  beam2, scores2, _ = uncached.beam_search(params, SRC, 10, 3)
  np.testing.assert_array_equal(beam, beam2)
  np.testing.assert_allclose(scores, scores2, atol=1e-4)
  with pytest.raises(UserError, match='model.max_len'):
    model.greedy_decode(params, SRC, 13)


def test_the_fused_attention_path_computes_what_the_masked_one_does(monkeypatch):
  """attention_impl 'cudnn' hands jax.nn.dot_product_attention a causal flag or each
  row's key length; here that function runs XLA's kernel (no GPU), which takes the
  same arguments, so the lengths and the plumbing are what is checked."""
  dot_product_attention, calls = jax.nn.dot_product_attention, []

  def on_xla(*args, implementation=None, **kwargs):
    calls.append((implementation, kwargs.get('is_causal', False),
                  kwargs.get('key_value_seq_lengths') is not None))
    return dot_product_attention(*args, implementation='xla', **kwargs)

  monkeypatch.setattr(jax.nn, 'dot_product_attention', on_xla)
  model, params = _model(dropout=0.0, attention_dropout=0.0)
  fused = TransformerModel(with_attention(model.module, 'cudnn'))
  src = jnp.concatenate([SRC, jnp.zeros_like(SRC[:1])])  # the last row is all padding.
  tgt = jnp.concatenate([TGT_IN, TGT_IN[:1]])

  def rows(m, p, n):  # the first n rows' logits, and the gradient of a weighted sum of them.
    f = lambda p: m.forward(p, src, tgt)[0][:n]
    out = jax.jit(f)(p)  # compiled: op by op, this test took a minute.
    weights = jnp.arange(out.size).reshape(out.shape)
    return out, jax.jit(jax.grad(lambda p: (f(p) * weights).sum()))(p)

  (want, want_grads), (got, got_grads) = rows(model, params, 2), rows(fused, params, 2)
  np.testing.assert_allclose(got, want, atol=1e-5)
  for g, w in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(g, w, atol=1e-3, rtol=1e-5)
  calls.clear()
  logits, cross = jax.jit(fused.forward)(params, src, tgt)
  assert np.isfinite(logits).all() and cross is None  # the all-padding row too.
  # 2 encoder self-attentions and 2 cross-attentions by key length, 2 causal ones.
  assert collections.Counter(calls) == {('cudnn', False, True): 4, ('cudnn', True, False): 2}
  calls.clear()
  maps = fused.attention_maps(params, SRC, TGT_IN)  # weights come from XLA's attention.
  assert maps['decoder_1/cross'].shape == (2, 2, 5, 6) and not calls
  np.testing.assert_array_equal(fused.greedy_decode(params, SRC, 8)[0],
                                model.greedy_decode(params, SRC, 8)[0])


def test_embedding_sharing_removes_tables():
  _, none = _model()
  _, output = _model(share_embeddings='output')
  _, shared = _model(share_embeddings='all')
  assert {'src_embed', 'tgt_embed', 'output'} <= set(none)
  assert 'output' not in output and 'src_embed' in output
  assert 'output' not in shared and 'src_embed' not in shared
  with pytest.raises(UserError, match='data.shared_vocab'):
    _model(vocab=(20, 30), share_embeddings='all')


def test_table3_sweep_points_are_valid_and_distinct():
  points = config_lib.load_sweep(str(ROOT / 'configs/transformer.py'), 'table3')
  assert points[0] == {} and len(points) == 19
  assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)


def test_tiny_transformer_trains_and_writes_every_head(tmp_path):
  local = _multi30k_dir(tmp_path / 'raw_copy')
  workdir = tmp_path / 'run'
  proc = launch('--config=configs/transformer.py:tiny', f'--workdir={workdir}',
                f'--config.data.path={local}', f'--config.data.data_dir={tmp_path / "tfds"}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / 'results.json').read_text())
  assert results['test/perplexity'] > 1.0 and 0.0 <= results['test/bleu_lowercase'] <= 100.0
  assert results['num_params'] > 0
  # One joint SentencePiece model, carried by the run (and by the prepared store).
  models = [(workdir / f'tokenizer_{side}' / 'spm.model').read_bytes() for side in ('source', 'target')]
  assert models[0] == models[1]
  maps = sorted(p.name for p in (workdir / 'plots' / 'attention_layers').glob('*.png'))
  assert maps == ['decoder_0_cross.png', 'decoder_0_self.png', 'decoder_1_cross.png',
                  'decoder_1_self.png', 'encoder_0_self.png', 'encoder_1_self.png']
  # Decoding speed of the trained checkpoint, here without the key/value cache.
  proc = launch('--config=configs/transformer.py:tiny', f'--workdir={workdir}',
                f'--config.data.path={local}', f'--config.data.data_dir={tmp_path / "tfds"}',
                '--mode=benchmark', '--config.bench.what=decode', '--config.model.kv_cache=False')
  assert proc.returncode == 0, proc.stderr[-3000:]
  row = json.loads(proc.stdout.strip().splitlines()[-1])
  assert row['what'] == 'decode' and row['checkpoint_step'] == 4 and row['kv_cache'] is False
  assert row['beam_size'] == 2 and row['examples_per_second'] > 0
