"""Hugging Face checkpoints in and out, checked by transformers itself.

Out: a trained tiny LM's export loads as GPT2LMHeadModel, gives the same logits on
the same tokens (float32, 1e-4) and the same greedy continuation; tasks without a
counterpart refuse. lm.py:peer's recipe, and the export trained by torch's AdamW,
clipping and nanoGPT's schedule, give the same losses and weights. In: a random
GPT-2 that transformers saved starts a run with the same logits and tokens,
fine-tunes under fsdp in bfloat16 and resumes. Out again: a tiny post-LN
Transformer loads as MarianMTModel with the same logits, greedy tokens and
SentencePiece ids; pre-LN ones are refused."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from conftest import ROOT, launch
from research import config as config_lib, huggingface, tasks, train
from research.errors import UserError
from research.data import vocab as vocab_lib
from test_language_model import corpus, task_of, tiny  # noqa: F401  (a fixture and helpers)


def test_an_lm_export_loads_in_transformers_with_the_same_logits(corpus, tmp_path):  # noqa: F811
  # train.steps=0 exports the initial parameters; the import test below checks the
  # same mapping with every array drawn at random.
  config = tiny(corpus, **{'train.steps': 0})
  workdir, out = tmp_path / 'run', tmp_path / 'hf'
  written = train.export(config, str(workdir), str(out))
  assert {p.split('/')[-1] for p in written} == {'config.json', 'model.safetensors',
                                                 'seqlab_tokenizer'}

  model = transformers.AutoModelForCausalLM.from_pretrained(out)
  assert type(model).__name__ == 'GPT2LMHeadModel'
  model.eval()
  from research.experiment import Experiment  # pylint: disable=g-import-not-at-top
  exp = Experiment(config, str(workdir))
  task, params = exp.task, exp.runtime.whole(exp.fresh_state().params)
  vocab = vocab_lib.load(str(out / 'seqlab_tokenizer'))
  assert vocab_lib.fingerprint(vocab) == vocab_lib.fingerprint(task.vocab)

  tokens = vocab.encode_array('the cat sat').astype(np.int32)[None]  # 11 of a 16-token context.
  ours = np.asarray(task.model.forward(params, tokens), np.float32)
  with torch.no_grad():
    theirs = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)

  # Greedy continuation: seqlab's sampler at temperature 0 against generate().
  new = 5
  with torch.no_grad():
    generated = model.generate(torch.tensor(tokens, dtype=torch.long), max_new_tokens=new,
                               do_sample=False, pad_token_id=vocab_lib.PAD).numpy()[0]
  prompt = np.zeros((1, task.context), np.int32)
  prompt[0, :tokens.shape[1]] = tokens[0]
  mine = np.asarray(task.model.generate(
      params, prompt, np.array([tokens.shape[1]], np.int32), jax.random.PRNGKey(0),
      num_tokens=new, temperature=0.0))[0]
  assert list(generated[tokens.shape[1]:]) == list(mine[:new])


@pytest.mark.parametrize('activation, theirs', [('gelu', 'gelu_new'), ('gelu_exact', 'gelu')])
def test_each_gelu_exports_as_the_transformers_activation_that_computes_it(  # noqa: F811
    corpus, activation, theirs):
  task = task_of(tiny(corpus, **{'model.activation': activation}))
  m = task.config.model
  config = huggingface.gpt2_config(len(task.vocab), task.context, m.model_dim, m.num_layers,
                                   m.num_heads, m.ff_dim, task.vocab.eos_id, m.norm_epsilon,
                                   activation)
  assert config['activation_function'] == theirs
  # Feed-forward inputs a few units wide, where the two GELUs differ by up to 5e-4.
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: x * 4 if 'inner' in jax.tree_util.keystr(path) else x,
      nn.meta.unbox(task.init(jax.random.PRNGKey(0))))
  tensors = huggingface.gpt2_tensors(jax.device_get(params), m.num_layers)
  tokens = np.random.default_rng(0).integers(4, len(task.vocab), (2, task.context))
  ours = np.asarray(task.model.forward(params, jnp.asarray(tokens, jnp.int32)))
  for name in ('gelu_new', 'gelu'):
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        **{**config, 'activation_function': name})).eval()
    missing, unexpected = model.load_state_dict(
        {k: torch.tensor(v) for k, v in tensors.items()}, strict=False)
    assert not unexpected and set(missing) <= {'lm_head.weight'}  # tied to wte.
    with torch.no_grad():
      gap = np.abs(model(torch.tensor(tokens)).logits.numpy() - ours).max()
    assert gap < 2e-5 if name == theirs else gap > 2e-4, (name, gap)


def test_the_peer_recipe_trains_as_nanogpt_does_in_torch(corpus, tmp_path):  # noqa: F811
  # lm.py:peer's model and optimizer keys against torch_gpt.py's recipe written in torch
  # (AdamW on nanoGPT's parameter groups, clipping, get_lr) on the exported model: the
  # same batches give the same losses and the same weights, step by step.
  peer = config_lib.load_config_file(str(ROOT / 'configs/lm.py'), 'peer')
  config = tiny(corpus, **{'train.steps': 0})
  for key in ('init', 'norm_epsilon', 'activation'):  # the shapes stay tiny's.
    config.model[key] = peer.model[key]
  config.optimizer = peer.optimizer
  config.optimizer.warmup_steps, config.optimizer.learning_rate = 2, 3e-2  # moves that show.
  workdir, out = tmp_path / 'run', tmp_path / 'hf'
  train.export(config, str(workdir), str(out))
  model = transformers.AutoModelForCausalLM.from_pretrained(out).train()
  assert model.config.activation_function == 'gelu'  # F.gelu's, as the peer's.

  steps = 6
  config.train.steps = steps
  from research.experiment import Experiment  # pylint: disable=g-import-not-at-top
  exp = Experiment(config, str(workdir))
  state, step_fn = exp.fresh_state(), exp.compile_train_step()
  params = [w for w in model.parameters()]
  opt = torch.optim.AdamW([{'params': [w for w in params if w.dim() >= 2], 'weight_decay': 0.1},
                           {'params': [w for w in params if w.dim() < 2], 'weight_decay': 0.0}],
                          lr=1.0, betas=(0.9, 0.95))
  lr, warmup = config.optimizer.learning_rate, config.optimizer.warmup_steps
  for i in range(steps):
    batch = exp.task.train_batch(i)
    state, metrics = step_fn(state, exp.runtime.put_batch(batch))
    tokens = torch.tensor(batch['tokens'], dtype=torch.long)
    logits = model(tokens[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             tokens[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    for group in opt.param_groups:  # nanoGPT's get_lr.
      group['lr'] = lr * (i + 1) / (warmup + 1) if i < warmup else lr / 10 + 0.5 * (
          1 + np.cos(np.pi * (i - warmup) / (steps - warmup))) * lr * 0.9
    opt.step()
    assert float(metrics['loss']) == pytest.approx(loss.item(), rel=1e-5), i

  ours = huggingface.gpt2_tensors(jax.device_get(state.params), config.model.num_layers,
                                  embed_scale=False)
  theirs = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  d = config.model.model_dim
  for name, array in ours.items():
    if name.endswith('c_attn.bias'):  # the keys' bias: its true gradient is zero, and Adam
      keep = np.r_[0:d, 2 * d:3 * d]  # scales rounding noise up to whole steps.
      array, theirs[name] = array[keep], theirs[name][keep]
    np.testing.assert_allclose(array, theirs[name], atol=1e-5, err_msg=name)


def test_export_of_a_task_without_a_counterpart_is_one_error_line(tmp_path):
  proc = launch('--config=configs/word2vec.py:tiny', f'--workdir={tmp_path}', '--mode=export',
                f'--export_dir={tmp_path / "hf"}')
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("error: task 'word2vec' has no Hugging Face counterpart")
  assert 'serves language_model' in lines[-1] and 'load_word2vec_format' in lines[-1]
  assert not (tmp_path / 'hf').exists()


def test_the_byte_tokenizer_exports_as_a_transformers_tokenizer_with_its_ids(tmp_path):
  from research import huggingface  # pylint: disable=g-import-not-at-top
  vocab = vocab_lib.ByteVocab()
  huggingface.write_lm_tokenizer(str(tmp_path), vocab)
  tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
  for text in ['the cat', 'héllo ☃ wörld\n  x', ' a  b ', '\x00\x7f']:
    assert tokenizer(text)['input_ids'] == vocab.encode(text)
    assert tokenizer.decode(vocab.encode(text)) == text
  assert tokenizer.eos_token_id == vocab.eos_id == vocab_lib.EOS


# --- in: a GPT-2 folder that transformers wrote -------------------------------------------

GPT2_SHAPES = {'model.num_layers': 2, 'model.model_dim': 16, 'model.num_heads': 2,
               'model.ff_dim': 32, 'model.norm_epsilon': 1e-5}


@pytest.fixture(scope='module')
def gpt2_folder(corpus, tmp_path_factory):  # noqa: F811
  """A small random GPT-2 saved by transformers: config.json, model.safetensors, and a
  byte-level BPE's vocab.json and merges.txt (trained on the test corpus)."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  folder = tmp_path_factory.mktemp('gpt2')
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator([corpus.read_text()], vocab_size=300, min_frequency=2,
                          special_tokens=['<|endoftext|>'], show_progress=False)
  bpe.save_model(str(folder))
  fast = transformers.GPT2TokenizerFast(str(folder / 'vocab.json'), str(folder / 'merges.txt'))
  eos = fast.convert_tokens_to_ids('<|endoftext|>')
  torch.manual_seed(0)
  config = transformers.GPT2Config(vocab_size=len(fast), n_positions=32, n_embd=16, n_layer=2,
                                   n_head=2, n_inner=32, bos_token_id=eos, eos_token_id=eos)
  model = transformers.GPT2LMHeadModel(config)
  with torch.no_grad():  # every weight drawn at a scale where a wrong mapping shows.
    for p in model.parameters():
      p.normal_(0.0, 0.3)
  model.save_pretrained(str(folder))
  return folder


def gpt2_config(corpus, folder, **overrides):  # noqa: F811
  return tiny(corpus, **{'data.tokenizer': 'huggingface', 'init.from_hf': str(folder),
                         **GPT2_SHAPES, **overrides})


@pytest.mark.parametrize('init', ['seqlab', 'gpt2'])
def test_a_gpt2_import_gives_transformers_logits_tokens_and_tensors(corpus, gpt2_folder,  # noqa: F811
                                                                    tmp_path, init):
  from research.experiment import Experiment  # pylint: disable=g-import-not-at-top
  config = gpt2_config(corpus, gpt2_folder, **{'model.init': init})
  exp = Experiment(config, str(tmp_path / 'run'))
  params = jax.device_get(exp.runtime.whole(exp.fresh_state().params))

  text = 'the cat sat on a mat while birds sang'
  fast = transformers.GPT2TokenizerFast(str(gpt2_folder / 'vocab.json'),
                                        str(gpt2_folder / 'merges.txt'))
  ids = fast(text)['input_ids']
  assert list(exp.task.vocab.encode(text)) == ids  # the same byte-level BPE.
  assert exp.task.vocab.decode(ids + [exp.task.vocab.eos_id, 5]) == text
  model = transformers.AutoModelForCausalLM.from_pretrained(gpt2_folder).eval()
  tokens = np.array([ids[:16]], np.int32)  # data.context=16 of the checkpoint's 32 positions.
  with torch.no_grad():
    theirs = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
  ours = np.asarray(exp.task.model.forward(params, tokens), np.float32)
  np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)

  # Out again: the export of the imported parameters holds the same tensors.
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  exp.task.export(params, str(tmp_path / 'out'))
  assert transformers.AutoTokenizer.from_pretrained(tmp_path / 'out')(text)['input_ids'] == ids
  back, original = load_file(str(tmp_path / 'out/model.safetensors')), load_file(
      str(gpt2_folder / 'model.safetensors'))
  for name, value in back.items():
    want = original[name]
    want = want[:len(value)] if name.endswith('wpe.weight') else want
    np.testing.assert_allclose(value, want, atol=1e-5, err_msg=name)
  # GPT-2's parametrization holds its embedding table as it is; seqlab's over sqrt(d).
  scale = 1.0 if init == 'gpt2' else np.sqrt(GPT2_SHAPES['model.model_dim'])
  np.testing.assert_allclose(params['embed']['embedding'] * scale,
                             original['transformer.wte.weight'], atol=1e-6)


def test_fine_tuning_a_gpt2_import_under_fsdp_in_bfloat16_resumes(corpus, gpt2_folder,  # noqa: F811
                                                                  tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  moved = tmp_path / 'gpt2'
  shutil.copytree(gpt2_folder, moved)
  settings = {'parallel.mode': 'fsdp', 'parallel.fsdp_min_size': 16, 'model.dtype': 'bfloat16',
              'train.steps': 2, 'eval.every': 2, 'checkpoint.every': 2,
              'model.init': 'gpt2', 'optimizer.weight_decay_on': 'weights'}  # lm.py:gpt2's.
  config = gpt2_config(corpus, moved, **settings)
  workdir = tmp_path / 'run'
  first = train.train_and_evaluate(config, str(workdir))
  assert np.isfinite(first['test/bpc'])
  shutil.rmtree(moved)  # a resumed run reads its checkpoints, never the folder again.
  settings['train.steps'] = 4
  resumed = train.train_and_evaluate(gpt2_config(corpus, moved, **settings), str(workdir))
  steps = [json.loads(line)['step'] for line in open(workdir / 'metrics.jsonl')]
  assert max(steps) == 4 and resumed['params_sha256'] != first['params_sha256']


def test_bad_gpt2_folders_are_one_error_line(corpus, gpt2_folder, tmp_path):  # noqa: F811
  import shutil  # pylint: disable=g-import-not-at-top
  llama = tmp_path / 'llama'
  shutil.copytree(gpt2_folder, llama)
  hf = json.loads((llama / 'config.json').read_text())
  (llama / 'config.json').write_text(json.dumps({**hf, 'model_type': 'llama'}))
  proc = launch('--config=configs/lm.py:tiny', f'--config.data.path={corpus}',
                '--config.data.tokenizer=huggingface', f'--config.init.from_hf={llama}',
                *[f'--config.{k}={v}' for k, v in GPT2_SHAPES.items()],
                f'--workdir={tmp_path / "run"}')
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith('error: ')
  assert "model_type 'llama'" in proc.stderr.strip().splitlines()[-1]

  from research.experiment import Experiment  # pylint: disable=g-import-not-at-top
  wide = Experiment(gpt2_config(corpus, gpt2_folder, **{'model.model_dim': 32}),
                    str(tmp_path / 'wide'))
  with pytest.raises(UserError, match=r'transformer.wte.weight has shape \(\d+, 16\).*needs '
                                      r'\(\d+, 32\)'):
    wide.task.pretrained_params()
  heads = Experiment(gpt2_config(corpus, gpt2_folder, **{'model.num_heads': 4}),
                     str(tmp_path / 'heads'))
  with pytest.raises(UserError, match='n_head=2; set --config.model.num_heads=2'):
    heads.task.pretrained_params()
  exact = Experiment(gpt2_config(corpus, gpt2_folder, **{'model.activation': 'gelu_exact'}),
                     str(tmp_path / 'exact'))
  with pytest.raises(UserError, match='activation_function=gelu_new; set --config.model.activation'
                                      '=gelu$'):
    exact.task.pretrained_params()
  with pytest.raises(UserError, match='data.tokenizer=huggingface'):
    tasks.validate(tiny(corpus, **{'init.from_hf': str(gpt2_folder)}))


# --- out: the Transformer as MarianMTModel -------------------------------------------------


@pytest.mark.filterwarnings('ignore:Recommended. pip install sacremoses')  # MarianTokenizer's.
def test_a_transformer_export_loads_as_marian_with_the_same_logits_and_tokens(tmp_path):
  from multihost_worker import configured  # pylint: disable=g-import-not-at-top
  from research.experiment import Experiment  # pylint: disable=g-import-not-at-top
  from test_translation_data import _multi30k_dir  # pylint: disable=g-import-not-at-top
  config = configured(dict(config=str(ROOT / 'configs/transformer.py'), preset='tiny', overrides={
      'data.path': _multi30k_dir(tmp_path / 'multi30k'), 'data.data_dir': str(tmp_path / 'tfds'),
      'data.vocab_size': 300, 'model.norm_epsilon': 1e-5, 'train.steps': 0}))
  workdir, out = str(tmp_path / 'run'), tmp_path / 'hf'
  out.mkdir()
  (out / 'notes.txt').write_text('kept')
  with pytest.raises(UserError, match='holds 1 file.*--export_overwrite'):
    train.export(config, workdir, str(out))
  exp = Experiment(config, workdir)
  task = exp.task
  # Every parameter moved off its init (layer norms' ones and zeros, zero biases), so
  # that a wrong placement of any array shows.
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: np.asarray(x) + rng.normal(0, 0.2, x.shape).astype(np.float32),
                        jax.device_get(exp.runtime.whole(exp.fresh_state().params)))
  written = task.export(params, str(out))
  assert {p.split('/')[-1] for p in written} >= {'config.json', 'model.safetensors',
                                                 'source.spm', 'vocab.json', 'seqlab_tokenizer'}

  model = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
  assert type(model).__name__ == 'MarianMTModel'
  tokenizer = transformers.AutoTokenizer.from_pretrained(out)
  texts = ['ein mann fährt fahrrad', 'zwei hunde']
  src, truncated = task.src_vocab.encode_batch(texts, 24, add_eos=False)  # as seqlab trains.
  assert not truncated
  # The same pieces (seqlab's sources carry no </s>, so no special tokens).
  assert tokenizer(texts[0], add_special_tokens=False)['input_ids'] == list(src[0][src[0] > 0])
  tgt_in, _ = task.tgt_vocab.encode_batch(['a man rides a bike', 'two dogs'], 20, add_eos=True)
  tgt_in = np.concatenate([np.full((2, 1), vocab_lib.BOS, np.int32), tgt_in[:, :-1]], 1)
  ours = np.asarray(task.model.forward(params, src, tgt_in)[0], np.float32)
  with torch.no_grad():
    theirs = model(input_ids=torch.tensor(src, dtype=torch.long),
                   attention_mask=torch.tensor(src != vocab_lib.PAD),
                   decoder_input_ids=torch.tensor(tgt_in, dtype=torch.long)).logits.numpy()
  np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)

  # Greedy decoding: transformers' generate, which the export's generation_config.json
  # keeps from emitting <pad> or <s>, as seqlab's decoders are.
  new = 6
  mine = np.asarray(task.model.greedy_decode(params, src, new)[0])
  with torch.no_grad():
    generated = model.generate(input_ids=torch.tensor(src, dtype=torch.long),
                               attention_mask=torch.tensor(src != vocab_lib.PAD), num_beams=1,
                               do_sample=False, max_new_tokens=new).numpy()
  for row, theirs_row in zip(mine, generated):
    until = list(theirs_row[1:])  # after decoder_start_token_id, up to the first </s>.
    until = until[:until.index(vocab_lib.EOS) + 1] if vocab_lib.EOS in until else until
    assert list(row[:len(until)]) == until

  # --export_overwrite replaces an earlier export's files, and only those.
  (out / 'tokenizer.json').write_text('{}')  # e.g. an LM's, which a Marian export lacks.
  train.export(config, workdir, str(out), overwrite=True)
  assert (out / 'notes.txt').read_text() == 'kept' and not (out / 'tokenizer.json').exists()
  assert transformers.AutoTokenizer.from_pretrained(out)(texts[0])['input_ids'][-1] == 2


def test_transformers_that_marian_cannot_hold_are_refused_by_name(tmp_path):
  proc = launch('--config=configs/transformer.py:bench', f'--workdir={tmp_path}', '--mode=export',
                f'--export_dir={tmp_path / "hf"}')
  assert proc.returncode == 2
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith('error: this Transformer has no MarianMTModel counterpart')
  assert 'model.pre_ln=True' in line and "model.positions='learned'" in line
  assert not (tmp_path / 'hf').exists()


def test_a_corpus_cut_into_pieces_encodes_as_the_whole_text_does(gpt2_folder):
  """Preparing a store cuts the text into chunks and pieces (before a word's space);
  GPT-2's pre-tokenizer must see the same pre-tokens as in the whole text."""
  from research.data import store  # pylint: disable=g-import-not-at-top
  vocab = vocab_lib.load(str(gpt2_folder))
  rng = np.random.default_rng(0)
  words = ['the', 'cat', "it's", '1984', 'naïve', '☃', ',', '.', '--', '']
  gaps = [' ', ' ', '  ', '   ', '\n', ' \n ', '\t', '\n\n']
  for _ in range(20):
    text = ''.join(rng.choice(words) + rng.choice(gaps) for _ in range(60))
    whole = vocab.encode(text)
    for size in (5, 11, 40):
      pieces = store._pieces(text, size, 'huggingface')  # pylint: disable=protected-access
      assert ''.join(pieces) == text and len(pieces) > 1
      assert [i for p in vocab.encode_many(pieces) for i in p] == whole
    chunks = [(text[i:i + 37], False) for i in range(0, len(text), 37)]
    chunks[-1] = (chunks[-1][0], True)
    carried = list(store._carried(iter(chunks), 'huggingface'))  # pylint: disable=protected-access
    assert ''.join(c for c, _ in carried) == text
    assert [i for c, _ in carried for i in vocab.encode(c)] == whole
  unbroken = '漢字。' * 60  # no whitespace: no place where a pre-token surely starts.
  assert store._pieces(unbroken, 7, 'huggingface') == [unbroken]  # pylint: disable=protected-access
  chunks = [(unbroken[:30], False), (unbroken[30:], True)]
  assert list(store._carried(iter(chunks), 'huggingface')) == [(unbroken, True)]  # pylint: disable=protected-access
