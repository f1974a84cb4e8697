"""A GPT-2-small-shaped export checked by transformers: `lm.py:gpt2_small` with
train.steps=0 (its initial, random parameters) in float32, exported with
--mode=export, loaded as GPT2LMHeadModel, and compared with seqlab's logits on a
64-token prompt from the text8-style corpus.

  python benchmarks/hf_gpt2_small.py [--out /tmp/hf-gpt2-small]

Needs $SEQLAB_DATA (the corpus the preset reads) and transformers with torch.
The last line is one JSON object: the largest absolute and relative logit
differences, and whether the greedy next tokens agree.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
ARGS = ['--config=configs/lm.py:gpt2_small', '--config.train.steps=0',
        '--config.model.dtype=float32']


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='/tmp/hf-gpt2-small')
  args = parser.parse_args()
  workdir, export_dir = os.path.join(args.out, 'run'), os.path.join(args.out, 'hf')
  started = time.time()
  proc = subprocess.run([sys.executable, 'launch.py', *ARGS, f'--workdir={workdir}',
                         '--mode=export', f'--export_dir={export_dir}'], cwd=HERE,
                        capture_output=True, text=True)
  if proc.returncode:
    sys.exit(proc.stderr[-3000:])
  export_seconds = time.time() - started

  import transformers  # pylint: disable=g-import-not-at-top
  from research import config as config_lib  # pylint: disable=g-import-not-at-top
  from research.experiment import Experiment  # pylint: disable=g-import-not-at-top
  model = transformers.AutoModelForCausalLM.from_pretrained(export_dir).eval()
  config = config_lib.load_config_file(str(HERE / 'configs/lm.py'), 'gpt2_small')
  config.train.steps, config.model.dtype = 0, 'float32'
  exp = Experiment(config, '')
  params = exp.runtime.whole(exp.fresh_state().params)
  tokens = exp.task.corpus.splits['test'].read(0, 64).astype(np.int32)[None]
  print(json.dumps({'class': type(model).__name__,
                    **logit_agreement(exp.task.model, params, model, tokens),
                    'export_seconds': round(export_seconds, 1)}))


def logit_agreement(ours, params, theirs, tokens) -> dict:
  """seqlab's LM `ours` against a transformers model on tokens [1, T]: the size of
  theirs, the largest logit differences and whether the argmax agrees."""
  import torch  # pylint: disable=g-import-not-at-top
  mine = np.asarray(ours.forward(params, tokens), np.float32)
  with torch.no_grad():
    other = theirs(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
  diff = np.abs(mine - other)
  return {'parameters': sum(p.numel() for p in theirs.parameters()),
          'prompt_tokens': tokens.shape[1], 'max_abs_diff': float(diff.max()),
          'max_rel_diff': float((diff / np.maximum(np.abs(mine), 1e-3)).max()),
          'logit_scale': float(np.abs(mine).max()),
          'same_argmax': bool((mine.argmax(-1) == other.argmax(-1)).all())}


if __name__ == '__main__':
  main()
