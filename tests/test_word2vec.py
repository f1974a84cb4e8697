"""word2vec's pure functions: windows, targets, and updates that equal -lr * gradient
(CBOW's context rows: the C tool's and gensim's step, see _cbow_hidden)."""
import jax
import jax.extend  # _dot_precisions walks jaxprs.
import jax.numpy as jnp
import numpy as np
import pytest

from research.models.word2vec import Word2Vec, huffman_tree


def _cbow_hidden(ctx, mean):
  """CBOW's hidden layer; its gradient reaches each context vector as the C tool and
  gensim step them: the whole error with the mean, error / size with the sum."""
  total = sum(ctx)
  value = total / len(ctx) if mean else total
  grad_scale = 1.0 if mean else 1.0 / len(ctx)
  return jax.lax.stop_gradient(value) + grad_scale * (total - jax.lax.stop_gradient(total))


def _reduced(model, tokens, seed):
  """A dynamic window per center, as segment_noise draws them."""
  size = len(tokens) - 2 * model.window
  return jax.random.randint(jax.random.PRNGKey(seed), (size,), 1, model.window + 1)


def _reference_loss(params, centers, contexts, cmask, words, labels, tmask, cbow, mean):
  """word2vec's objective written out one prediction at a time."""
  total = 0.0
  for b in range(len(centers)):
    ctx = [params['input'][contexts[b, j]] for j in range(contexts.shape[1]) if cmask[b, j]]
    inputs = ([_cbow_hidden(ctx, mean)] if ctx else []) if cbow else ctx
    for x in inputs:
      for t in range(words.shape[1]):
        if tmask[b, t]:
          s = jnp.dot(x, params['output'][words[b, t]])
          total -= jax.nn.log_sigmoid(s if labels[b, t] else -s)
  return total


@pytest.mark.parametrize('cbow,mean,negative', [(False, True, 3), (True, True, 3),
                                                (True, False, 3), (False, True, 0)])
def test_updates_are_minus_lr_times_the_gradient(cbow, mean, negative):
  model = Word2Vec(vocab_size=9, dim=4, window=2, negative=negative, cbow=cbow, cbow_mean=mean)
  params = model.init(jax.random.PRNGKey(0))
  params['output'] = 0.3 * jax.random.normal(jax.random.PRNGKey(1), params['output'].shape)
  tokens = jnp.array([1, 2, 3, 1, 4, 5, 2, 6, 7, 1])      # repeats: summed updates.
  sentence = jnp.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2])    # windows stop at boundaries.
  valid = jnp.ones(10, bool).at[-1].set(False)
  centers, contexts, cmask = model.windows(tokens, sentence, valid, _reduced(model, tokens, 2))
  if negative:
    cdf = jnp.cumsum(jnp.full(9, 1 / 9))
    words, labels, tmask = model.targets(centers, jax.random.PRNGKey(3), cdf)
  else:
    codes, points, lengths = (jnp.asarray(a) for a in huffman_tree(np.arange(1, 10)))
    words, labels, tmask = Word2Vec.huffman_targets(centers, codes, points, lengths)
  args = (centers, contexts, cmask, words, labels, tmask)
  loss, n, updates = model.loss_and_updates(params, *args, lr=0.1)
  ref = lambda p: _reference_loss(p, *args, cbow, mean)
  np.testing.assert_allclose(loss, ref(params), rtol=1e-5)
  grads = jax.grad(ref)(params)
  new = Word2Vec.apply(params, updates)
  for name in params:
    np.testing.assert_allclose(new[name], params[name] - 0.1 * grads[name], atol=1e-6)
  assert n > 0


def test_windows_respect_the_dynamic_size_sentences_and_padding():
  model = Word2Vec(vocab_size=50, dim=2, window=3)
  tokens = jnp.arange(20)
  sentence = (jnp.arange(20) >= 12).astype(jnp.int32)
  valid = jnp.arange(20) < 18
  centers, contexts, mask = model.windows(tokens, sentence, valid, _reduced(model, tokens, 0))
  assert centers.tolist() == list(range(3, 17))
  for b, c in enumerate(centers.tolist()):
    seen = contexts[b][mask[b]].tolist()
    assert c not in seen and all(abs(o - c) <= 3 for o in seen)
    assert all((o >= 12) == (c >= 12) and o < 18 for o in seen)
    # the window is shrunk symmetrically: it is a contiguous run around the center.
    reach = max(abs(o - c) for o in seen) if seen else 0
    expected = [o for o in range(c - reach, c + reach + 1)
                if o != c and (o >= 12) == (c >= 12) and o < 18]
    assert seen == expected
  sizes = {max(abs(o - c) for o in contexts[b][mask[b]].tolist())
           for b, c in enumerate(centers.tolist()[3:9]) if mask[b].any()}
  assert len(sizes) > 1  # the size varies per center.


def test_negatives_follow_the_noise_distribution_and_skip_the_center():
  model = Word2Vec(vocab_size=4, dim=2, negative=5)
  noise = np.array([0.1, 0.2, 0.3, 0.4])
  centers = jnp.zeros(20000, jnp.int32)
  words, labels, mask = model.targets(centers, jax.random.PRNGKey(0), jnp.cumsum(noise))
  freq = np.bincount(np.asarray(words[:, 1:]).ravel(), minlength=4) / words[:, 1:].size
  np.testing.assert_allclose(freq, noise, atol=0.01)
  assert labels[:, 0].all() and not labels[:, 1:].any()
  np.testing.assert_array_equal(mask[:, 1:], words[:, 1:] != 0)


def test_huffman_tree_is_prefix_free_and_frequent_words_get_short_codes():
  counts = np.array([50, 20, 10, 10, 5, 3, 1, 1])
  codes, points, lengths = huffman_tree(counts)
  words = [''.join(map(str, codes[i, :lengths[i]])) for i in range(len(counts))]
  assert all(not b.startswith(a) for a in words for b in words if a != b)
  assert lengths[0] == lengths.min() and lengths[-1] == lengths.max()
  assert points.max() == len(counts) - 2 and (points[:, 0] == len(counts) - 2).all()
  # Expected code length is the entropy bound's: within one bit of it.
  p = counts / counts.sum()
  assert (p * lengths).sum() < -(p * np.log2(p)).sum() + 1


def test_segment_noise_draws_windows_uniformly_and_negatives_from_the_noise():
  model = Word2Vec(vocab_size=4, dim=2, window=3, negative=5, shared_negatives=500)
  noise = np.array([0.1, 0.2, 0.3, 0.4])
  reduced, negatives = model.segment_noise(jax.random.PRNGKey(0), 40, 100, jnp.cumsum(noise))
  assert reduced.shape == (40, 100) and negatives.shape == (40, 500)
  np.testing.assert_allclose(np.bincount(np.asarray(reduced).ravel())[1:] / reduced.size,
                             [1 / 3] * 3, atol=0.02)
  np.testing.assert_allclose(np.bincount(np.asarray(negatives).ravel()) / negatives.size,
                             noise, atol=0.01)
  assert (negatives[0] != negatives[1]).any()  # each segment its own draws.
  hs = Word2Vec(vocab_size=4, dim=2, window=3, negative=0)
  assert hs.segment_noise(jax.random.PRNGKey(0), 2, 5, None)[1].shape == (2, 0)


@pytest.mark.parametrize('cbow', [False, True])
def test_segment_updates_are_minus_lr_times_the_gradient_of_the_shared_negative_objective(cbow):
  rng, lr, k = jax.random.PRNGKey(2), 0.1, 3
  model = Word2Vec(vocab_size=9, dim=4, window=2, negative=5, cbow=cbow, shared_negatives=k)
  params = model.init(jax.random.PRNGKey(0))
  params['output'] = 0.3 * jax.random.normal(jax.random.PRNGKey(1), params['output'].shape)
  tokens = jnp.array([1, 2, 3, 1, 4, 5, 2, 6, 7, 1, 8, 3])
  sentence = jnp.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2])
  valid = jnp.ones(12, bool).at[-1].set(False)
  cdf = jnp.cumsum(jnp.full(9, 1 / 9))
  reduced, negatives = model.segment_noise(rng, 1, len(tokens) - 4, cdf)
  reduced, negatives = reduced[0], negatives[0]
  assert negatives.shape == (k,) and 1 <= reduced.min() and reduced.max() <= 2
  loss, n, updates = model.segment_updates(params, tokens, sentence, valid, reduced, negatives,
                                           lr)
  centers, contexts, cmask = model.windows(tokens, sentence, valid, reduced)

  def reference(p):
    total = 0.0
    for b in range(len(centers)):
      ctx = [p['input'][contexts[b, j]] for j in range(contexts.shape[1]) if cmask[b, j]]
      inputs = ([_cbow_hidden(ctx, True)] if ctx else []) if cbow else ctx
      for x in inputs:
        total -= jax.nn.log_sigmoid(jnp.dot(x, p['output'][centers[b]]))
        for neg in negatives:  # each shared draw stands for negative / k of word2vec's.
          total -= 5 / k * jax.nn.log_sigmoid(-jnp.dot(x, p['output'][neg]))
    return total

  np.testing.assert_allclose(loss, reference(params), rtol=1e-5)
  grads = jax.grad(reference)(params)
  new = Word2Vec.apply(params, updates)
  for name in params:
    np.testing.assert_allclose(new[name], params[name] - lr * grads[name], atol=1e-6)
  assert n == (cmask.any(1).sum() if cbow else cmask.sum())


def test_analogy_paper_points_are_exactly_the_presets():
  import pathlib
  from research import config as config_lib
  root = pathlib.Path(__file__).resolve().parents[1]
  paper = config_lib.load_config_module(str(root / 'configs/papers/word2vec_analogies.py'))
  w2v = config_lib.load_config_module(str(root / 'configs/word2vec.py'))
  for point, preset in zip(paper.get_sweep(), ('skipgram', 'cbow')):
    config = paper.get_config()
    for key, value in point.items():
      section, name = key.split('.')
      config[section][name] = value
    assert config.to_dict() == w2v.get_config(preset).to_dict(), preset


def _dot_precisions(jaxpr):
  """The precision of every dot_general in a jaxpr, sub-jaxprs included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      found.append(eqn.params['precision'])
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          found += _dot_precisions(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          found += _dot_precisions(sub)
  return found


@pytest.mark.parametrize('cbow', [False, True])
def test_every_product_asks_for_full_f32(cbow):
  # A GPU's default float32 product is TF32, which moves a run off the CPU's numbers (_F32).
  model = Word2Vec(vocab_size=9, dim=4, window=2, negative=5, cbow=cbow, shared_negatives=3)
  params = model.init(jax.random.PRNGKey(0))
  tokens = jnp.arange(12) % 9
  sentence, valid = jnp.zeros(12, jnp.int32), jnp.ones(12, bool)
  cdf = jnp.cumsum(jnp.full(9, 1 / 9))
  reduced, negatives = model.segment_noise(jax.random.PRNGKey(1), 1, 8, cdf)
  segment = jax.make_jaxpr(lambda p: model.segment_updates(
      p, tokens, sentence, valid, reduced[0], negatives[0], 0.1))(params)
  centers, contexts, cmask = model.windows(tokens, sentence, valid, _reduced(model, tokens, 2))
  words, labels, tmask = model.targets(centers, jax.random.PRNGKey(3), cdf)
  windowed = jax.make_jaxpr(lambda p: model.loss_and_updates(
      p, centers, contexts, cmask, words, labels, tmask, 0.1))(params)
  for jaxpr in (segment.jaxpr, windowed.jaxpr):
    precisions = _dot_precisions(jaxpr)
    assert precisions, 'no products found: the check would pass vacuously'
    for precision in precisions:
      assert precision == (jax.lax.Precision.HIGHEST,) * 2, precision


def test_log_sigmoid_matches_jax_including_the_extremes():
  from research.models.word2vec import _log_sigmoid
  x = jnp.array([-jnp.inf, -1e4, -88.0, -20.0, -1.0, -1e-8, 0.0, 1e-8, 1.0, 20.0, 88.0, 1e4,
                 jnp.inf])
  np.testing.assert_allclose(_log_sigmoid(x), jax.nn.log_sigmoid(x), rtol=1e-6, atol=0)
  assert jnp.isnan(_log_sigmoid(jnp.array(jnp.nan)))
