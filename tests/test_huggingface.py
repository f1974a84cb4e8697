"""Hugging Face checkpoints out, checked by transformers itself: a trained tiny LM's
export loads as GPT2LMHeadModel, gives the same logits on the same tokens (float32,
1e-4) and the same greedy continuation; tasks without a counterpart refuse."""
import json

import jax
import numpy as np
import torch
import transformers

from conftest import launch
from research import train
from research.data import vocab as vocab_lib
from test_language_model import corpus, task_of, tiny  # noqa: F401  (a fixture and helpers)


def test_an_lm_export_loads_in_transformers_with_the_same_logits(corpus, tmp_path):  # noqa: F811
  config = tiny(corpus, **{'train.steps': 6})
  workdir, out = tmp_path / 'run', tmp_path / 'hf'
  train.train_and_evaluate(config, str(workdir))
  proc = launch('--config=configs/lm.py:tiny', f'--config.data.path={corpus}',
                '--config.train.steps=6', f'--workdir={workdir}', '--mode=export',
                f'--export_dir={out}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  written = json.loads(proc.stdout.strip().splitlines()[-1])
  assert {p.split('/')[-1] for p in written} == {'config.json', 'model.safetensors',
                                                 'seqlab_tokenizer'}

  model = transformers.AutoModelForCausalLM.from_pretrained(out)
  assert type(model).__name__ == 'GPT2LMHeadModel'
  model.eval()
  task = task_of(config)
  from research.experiment import Experiment  # pylint: disable=g-import-not-at-top
  exp = Experiment(config, str(workdir))
  state, _ = exp.restore(required=True)
  exp.checkpointer.close()
  params = exp.runtime.whole(state.params)
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


def test_export_of_a_task_without_a_counterpart_is_one_error_line(tmp_path):
  proc = launch('--config=configs/word2vec.py:tiny', f'--workdir={tmp_path}', '--mode=export',
                f'--export_dir={tmp_path / "hf"}')
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("error: task 'word2vec' has no Hugging Face counterpart")
  assert 'serves language_model' in lines[-1] and 'load_word2vec_format' in lines[-1]
  assert not (tmp_path / 'hf').exists()
