"""The decoder-only Transformer language model: causality, the key/value cache,
sampling, text8-style splits and evaluation windows, and runs through launch.py."""
import json
import os
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, launch
from research import config as config_lib, train
from research.data.vocab import EOS
from research.errors import UserError
from research.models import language_model, transformer
from research.parallel import Runtime
from research.tasks.language_model import LanguageModelTask

WORDS = 'the cat sat on a mat and a dog ran to the park while birds sang in trees'.split()


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  rng = np.random.default_rng(0)
  path = tmp_path_factory.mktemp('lm') / 'corpus.txt'
  path.write_text(' ' + ' '.join(rng.choice(WORDS, 1500)))  # ~6k characters, a-z and space.
  return path


def tiny(corpus, **overrides):
  config = config_lib.load_config_file(str(ROOT / 'configs/lm.py'), 'tiny')
  config.data.path = str(corpus)
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


def task_of(config, devices=1):
  return LanguageModelTask(config, Runtime.create('mesh', jax.devices()[:devices]))


def test_splits_follow_text8_and_windows_score_every_target_once(corpus):
  task = task_of(tiny(corpus))
  text = corpus.read_text()
  n = len(text) + 1  # the document's characters and its </s>.
  splits = task.corpus.splits
  assert [len(splits[s]) for s in ('train', 'validation', 'test')] == [
      int(n * 0.9), int(n * 0.95) - int(n * 0.9), n - int(n * 0.95)]
  assert task.vocab.decode(splits['train'].read(0, 20)) == text[:20]
  assert task.vocab.itos[4:] == sorted(set(text))  # the corpus's own alphabet.
  assert sum(task.corpus.characters.values()) == pytest.approx(len(text))
  for stride in (16, 5, 1):
    task.stride = stride
    for length in (17, 40, 333):
      starts, first = task.windows(length)
      scored = np.zeros(length, int)
      for s, f in zip(starts, first):
        assert 0 <= s and s + task.context + 1 <= length
        scored[s + 1 + f:s + 1 + task.context] += 1
      assert scored[0] == 0 and np.all(scored[1:] == 1), (stride, length)


def test_the_model_is_causal_with_tied_embeddings_and_learned_positions(corpus):
  task = task_of(tiny(corpus))
  params = nn.meta.unbox(task.init(jax.random.PRNGKey(0)))
  assert set(params) == {'embed', 'position_embeddings', 'block_0', 'block_1', 'final_norm'}
  assert set(params['block_0']) == {'self_attention', 'feed_forward', 'norm1', 'norm2'}
  v = len(task.vocab)
  x = jnp.asarray(np.random.default_rng(1).integers(0, v, (2, 16)), jnp.int32)
  y = x.at[:, 9:].set((x[:, 9:] + 5) % v)
  a, b = task.model.forward(params, x), task.model.forward(params, y)
  assert np.isfinite(a).all() and np.isfinite(b).all()
  np.testing.assert_allclose(a[:, :9], b[:, :9], rtol=1e-6, atol=1e-6)
  assert not np.allclose(a[:, 9:], b[:, 9:])


def test_gpt2_init_draws_nanogpts_scales_and_leaves_embeddings_unscaled(corpus):
  settings = {'model.num_layers': 4, 'model.model_dim': 64, 'model.ff_dim': 256}
  ours, gpt2 = (task_of(tiny(corpus, **{**settings, 'model.init': init}))
                for init in ('seqlab', 'gpt2'))
  params = nn.meta.unbox(gpt2.init(jax.random.PRNGKey(0)))
  block = params['block_1']
  for leaf in (params['embed']['embedding'], params['position_embeddings'],
               block['self_attention']['query']['kernel'], block['feed_forward']['inner']['kernel']):
    assert np.std(leaf) == pytest.approx(0.02, rel=0.15) and abs(np.mean(leaf)) < 0.005
  for leaf in (block['self_attention']['out']['kernel'], block['feed_forward']['outer']['kernel']):
    assert np.std(leaf) == pytest.approx(0.02 / np.sqrt(8), rel=0.15)  # 2 x 4 layers.
  assert not np.any(block['self_attention']['query']['bias'])
  assert not np.any(block['feed_forward']['inner']['bias'])
  assert np.all(block['norm1']['scale'] == 1) and np.all(params['final_norm']['scale'] == 1)
  # The same parameters: seqlab's model scales the input embeddings by sqrt(d), GPT-2's does not.
  x = jnp.asarray(np.random.default_rng(3).integers(0, len(gpt2.vocab), (2, 16)), jnp.int32)
  unscaled = nn.meta.unbox(gpt2.init(jax.random.PRNGKey(0)))
  scaled = jax.tree.map(lambda a: a, unscaled)
  scaled['embed'] = {'embedding': unscaled['embed']['embedding'] / 8.0}  # sqrt(64)
  scaled['final_norm'] = {k: v * 8.0 for k, v in unscaled['final_norm'].items()}
  np.testing.assert_allclose(ours.model.forward(scaled, x), gpt2.model.forward(unscaled, x),
                             rtol=1e-4, atol=1e-5)
  with pytest.raises(UserError, match="model.init='xavier'.*seqlab, gpt2"):
    task_of(tiny(corpus, **{'model.init': 'xavier'}))


def test_weight_decay_on_weights_spares_biases_and_norms(corpus):
  from research import optim  # pylint: disable=g-import-not-at-top
  params = nn.meta.unbox(task_of(tiny(corpus)).init(jax.random.PRNGKey(0)))
  params = jax.tree.map(lambda a: a + 0.5, params)  # no zero bias: decay would not move it.
  cfg = config_lib.base_config().optimizer
  cfg.update(name='adamw', learning_rate=1.0, schedule='constant', weight_decay=0.5,
             grad_clip_norm=0.0)
  moved = {}
  for on in ('all', 'weights'):
    cfg.weight_decay_on = on
    tx, _ = optim.make_optimizer(cfg, 10)
    zeros = jax.tree.map(jnp.zeros_like, params)  # only the decay moves a parameter.
    updates, _ = tx.update(zeros, tx.init(params), params)
    moved[on] = jax.tree.map(lambda u: bool(np.any(u)), updates)
  block = moved['weights']['block_0']
  assert block['self_attention']['query']['kernel'] and block['feed_forward']['outer']['kernel']
  assert moved['weights']['embed']['embedding'] and moved['weights']['position_embeddings']
  assert not block['self_attention']['query']['bias'] and not block['feed_forward']['inner']['bias']
  assert not block['norm1']['scale'] and not moved['weights']['final_norm']['bias']
  assert all(jax.tree.leaves(moved['all']))


def test_a_resume_that_would_read_the_checkpoints_otherwise_is_refused(corpus, tmp_path):
  from research.experiment import Experiment  # pylint: disable=g-import-not-at-top
  settings = {'train.steps': 2, 'eval.every': 2, 'checkpoint.every': 2}
  train.train_and_evaluate(tiny(corpus, **settings), str(tmp_path))
  unscaled = Experiment(tiny(corpus, **settings, **{'model.init': 'gpt2'}), str(tmp_path))
  with pytest.raises(UserError, match="trained with model.init='seqlab'.*--config.model.init=seqlab"):
    unscaled.restore()
  exact = Experiment(tiny(corpus, **settings, **{'model.activation': 'gelu_exact'}), str(tmp_path))
  with pytest.raises(UserError, match="model.activation='gelu'.*--config.model.activation=gelu "):
    exact.restore()
  masked = Experiment(tiny(corpus, **settings, **{'optimizer.weight_decay_on': 'weights'}),
                      str(tmp_path))
  with pytest.raises(UserError, match='another optimizer state.*optimizer.weight_decay_on'):
    masked.restore()
  assert Experiment(tiny(corpus, **settings), str(tmp_path)).restore()[1] == 2


def test_blocked_causal_attention_equals_one_masked_softmax(corpus):
  whole, blocked = (task_of(tiny(corpus, **{'model.attention_block': b})) for b in (0, 4))
  params = nn.meta.unbox(whole.init(jax.random.PRNGKey(0)))
  x = jnp.asarray(np.random.default_rng(2).integers(0, len(whole.vocab), (3, 16)), jnp.int32)
  # Compiled: op by op, the forward and gradient passes took half a minute.
  forward = lambda task: jax.jit(task.model.forward)(params, x)
  grad = lambda task: jax.jit(jax.grad(lambda p: jnp.mean(task.model.forward(p, x) ** 2)))(params)
  want = forward(whole)
  assert np.isfinite(want).all()
  np.testing.assert_allclose(forward(blocked), want, rtol=1e-5, atol=1e-6)
  for g, h in zip(jax.tree.leaves(grad(blocked)), jax.tree.leaves(grad(whole))):
    np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('tokenizer, vocab_size', [
    ('byte', 2), ('word', 30), ('sentencepiece', 320)])
def test_byte_word_and_sentencepiece_tokens_are_scored_per_character(
    corpus, tmp_path, tokenizer, vocab_size):
  config = tiny(corpus, **{'data.tokenizer': tokenizer, 'data.vocab_size': vocab_size})
  task = LanguageModelTask(config, Runtime.create('mesh', jax.devices()[:1]), str(tmp_path))
  text = corpus.read_text()
  store = task.corpus.stores[0]
  everything = store.tokens.read(0, len(store))
  assert 0 <= everything.min() and everything.max() < len(task.vocab)
  assert everything[-1] == EOS and (everything == EOS).sum() == 1  # one document.
  decoded = task.vocab.decode(everything)
  assert decoded == (' '.join(text.split()) if tokenizer == 'word' else text.strip()
                     if tokenizer == 'sentencepiece' else text)
  assert (len(everything) == len(text.encode()) + 1) == (tokenizer == 'byte')
  ids = task.corpus.splits['test'].read(0, len(task.corpus.splits['test']))
  result = task.evaluate(task.init(jax.random.PRNGKey(0)), 'test')
  assert result['tokens'] == len(ids) - 1
  # The characters the scored tokens cover.
  chars = task.corpus.characters['test'] * result['tokens'] / len(ids)
  assert result['bpc'] * np.log(2) * chars == pytest.approx(
      result['nll_per_token'] * result['tokens'], rel=1e-9)
  assert result['perplexity'] == pytest.approx(np.exp(result['nll_per_token']), rel=1e-9)


def test_the_cache_gives_what_rerunning_the_prefix_gives(corpus):
  task = task_of(tiny(corpus))
  params = task.init(jax.random.PRNGKey(3))
  prompt = np.zeros((2, 16), np.int32)
  prompt[0, :5], prompt[1, :9] = [1, 2, 3, 4, 5], [9, 8, 7, 6, 5, 4, 3, 2, 1]
  lengths = np.array([5, 9], np.int32)
  # 14 tokens: row 1 fills the context of 16, and its last 7 come from a full window.
  out = task.model.generate(params, prompt, lengths, jax.random.PRNGKey(0), num_tokens=14,
                            temperature=0.0)
  for row in range(2):  # greedy by hand: the last 16 tokens through the model at every step.
    seq = list(prompt[row, :lengths[row]])
    for _ in range(14):
      window = seq[-16:]
      logits = task.model.forward(params, jnp.asarray([window + [0] * (16 - len(window))]))
      seq.append(int(jnp.argmax(logits[0, len(window) - 1])))
    assert list(out[row]) == seq[lengths[row]:]
  none = task.model.generate(params, prompt, lengths, jax.random.PRNGKey(0), num_tokens=0)
  assert none.shape == (2, 0)


def test_sampling_honours_temperature_top_k_and_top_p():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 2000))
  keys = jax.random.PRNGKey(0)
  sample = lambda **kw: np.asarray(language_model.sample_logits(keys, logits, **kw))
  assert np.all(sample(temperature=0.0, top_k=0, top_p=1.0) == 0)
  assert set(sample(temperature=1.0, top_k=2, top_p=1.0)) == {0, 1}
  assert set(sample(temperature=1.0, top_k=0, top_p=0.7)) == {0, 1}   # 0.5 + 0.3 reach it.
  assert set(sample(temperature=1.0, top_k=0, top_p=0.4)) == {0}
  free = sample(temperature=1.0, top_k=0, top_p=1.0)
  assert set(free) == {0, 1, 2, 3} and abs(np.mean(free == 0) - 0.5) < 0.05


def test_a_run_trains_evaluates_and_continues_prompts(corpus, tmp_path):
  proc = launch('--config=configs/lm.py:tiny', f'--config.data.path={corpus}',
                '--config.train.steps=20', '--config.optimizer.learning_rate=1e-2',
                '--config.train.log_every=5', f'--workdir={tmp_path}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / 'results.json').read_text())
  losses = [r['train/loss'] for r in map(json.loads, (tmp_path / 'metrics.jsonl').read_text()
                                                      .splitlines()) if 'train/loss' in r]
  assert losses[-1] < losses[0] - 0.3  # from ln(27) toward the words' structure.
  assert 0 < results['test/bpc'] < 4.76 and results['validation/bpc'] > 0  # < log2(27).
  assert results['test/tokens'] == len(task_of(tiny(corpus)).corpus.splits['test']) - 1
  assert (tmp_path / 'tokenizer' / 'vocab.json').exists()  # the run carries its tokenizer.
  lines = 'the cat\nTHE DOG, 42!\n' + 'a park ' * 10 + '\n'
  proc = launch('--config=configs/lm.py:tiny', f'--config.data.path={corpus}',
                '--config.train.steps=20', '--mode=predict', f'--workdir={tmp_path}', input=lines)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout.splitlines()
  assert len(out) == 3 and all(len(o) == 8 and set(o) <= set(corpus.read_text()) for o in out)
  assert 'outside the vocabulary were read as' in proc.stderr  # the capitals, ',' and '!'.
  assert 'longer than data.context=16 tokens kept their last 16' in proc.stderr


def test_a_corpus_shorter_than_a_window_is_a_clear_error(tmp_path):
  short = tmp_path / 'short.txt'
  short.write_text('the cat sat on the mat ' * 3)
  proc = launch('--config=configs/lm.py:tiny', f'--config.data.path={short}',
                f'--workdir={tmp_path / "run"}')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith('error: the validation split holds')
  with pytest.raises(UserError, match='data.eval_stride=20 must be in 1..data.context=16'):
    LanguageModelTask.validate(tiny(short, **{'data.eval_stride': 20}))


def test_four_devices_train_as_one(corpus, tmp_path):
  results = [train.train_and_evaluate(tiny(corpus), str(tmp_path / str(n)),
                                      devices=jax.devices()[:n]) for n in (1, 4)]
  assert results[1]['test/bpc'] == pytest.approx(results[0]['test/bpc'], rel=1e-5)


def test_the_bench_preset_reports_tokens_per_second():
  config = config_lib.load_config_file(str(ROOT / 'configs/lm.py'), 'bench')
  config.model.update(num_layers=1, model_dim=16, num_heads=2, ff_dim=32)
  config.data.context, config.train.batch_size = 32, 8
  config.bench.warmup_steps, config.bench.steps, config.bench.matmul_size = 1, 2, 64
  row = train.benchmark(config)
  assert row['tokens_per_second'] == pytest.approx(32 * row['examples_per_second'], rel=1e-3)
  assert row['mfu'] > 0


def test_cudnn_attention_is_taken_only_where_cudnn_applies():
  check = transformer.check_attention
  assert check('cudnn', jnp.bfloat16, 0.0, 64, platform='cuda') == 'cudnn'
  assert check('xla', jnp.float32, 0.1, 6, platform='cpu') == 'xla'
  assert check('auto', jnp.bfloat16, 0.0, 64, platform='cuda') == 'cudnn'
  assert check('auto', jnp.bfloat16, 0.0, 64, platform='cuda', v_dim=32) == 'xla'
  assert check('auto', jnp.float32, 0.0, 64, platform='cuda') == 'xla'
  assert check('auto', jnp.bfloat16, 0.0, 64, platform='cpu') == 'xla'
  assert check('auto', jnp.bfloat16, 0.0, 64, platform='gpu') == 'xla'  # not CUDA sm80+.
  assert transformer.attention_platform() == 'cpu'
  for dtype, dropout, head, platform in ((jnp.float32, 0.0, 64, 'cuda'),  # 32-bit compute.
                                         (jnp.bfloat16, 0.1, 64, 'cuda'),  # dropout on weights.
                                         (jnp.bfloat16, 0.0, 60, 'cuda'),  # head size.
                                         (jnp.bfloat16, 0.0, 64, 'gpu'),  # ROCm, pre-Ampere.
                                         (jnp.bfloat16, 0.0, 64, 'cpu')):
    with pytest.raises(UserError, match='model.attention_impl=cudnn needs an NVIDIA GPU'):
      check('cudnn', dtype, dropout, head, platform=platform)
  with pytest.raises(UserError, match="model.attention_impl='flash' is not a kernel"):
    check('flash', jnp.bfloat16, 0.0, 64, platform='cuda')


@pytest.mark.parametrize('capability, expected', [('9.0', 'cuda'), ('8.0', 'cuda'),
                                                    ('7.5', 'gpu'), ('gfx90a', 'gpu')])
def test_attention_platform_is_cuda_only_where_cudnn_fuses(monkeypatch, capability, expected):
  device = types.SimpleNamespace(platform='gpu', compute_capability=capability)
  monkeypatch.setattr(jax, 'devices', lambda: [device])
  assert transformer.attention_platform() == expected


def test_cudnn_attention_on_a_cpu_is_one_error_line(corpus, tmp_path):
  proc = launch('--config=configs/lm.py:tiny', f'--config.data.path={corpus}',
                '--config.model.attention_impl=cudnn', f'--workdir={tmp_path}')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith(
      'error: model.attention_impl=cudnn needs an NVIDIA GPU')
