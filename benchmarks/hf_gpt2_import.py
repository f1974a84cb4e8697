"""A GPT-2-small checkpoint into seqlab, checked against transformers: a random
GPT2LMHeadModel with GPT-2 small's shapes (GPT2Config's defaults) and a byte-level
BPE trained on the text8-style corpus's first 2M characters, saved by
transformers, then read by `lm.py:gpt2` with init.from_hf; seqlab's logits on a
64-token prompt against transformers' on the same ids.

  python benchmarks/hf_gpt2_import.py [--out /tmp/hf-gpt2-import]

Needs $SEQLAB_DATA (wiki2019_text8like/) and transformers with torch. The last
line is one JSON object: the largest logit differences, whether the argmax
agrees, whether the token ids agree with GPT2TokenizerFast's, and the seconds
the import took.
"""
import argparse
import gzip
import json
import os
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='/tmp/hf-gpt2-import')
  args = parser.parse_args()
  data = os.environ.get('SEQLAB_DATA', '')
  source = os.path.join(data, 'wiki2019_text8like', 'text8like.gz')
  if not os.path.isfile(source):
    print(json.dumps({'skipped': f'no {source}; set SEQLAB_DATA'}))
    return
  import tokenizers  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  folder, corpus = os.path.join(args.out, 'gpt2'), os.path.join(args.out, 'corpus.txt')
  os.makedirs(folder, exist_ok=True)
  with gzip.open(source, 'rt') as f:
    text = f.read(2_000_000)
  with open(corpus, 'w') as f:
    f.write(text)
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator([text[i:i + 10_000] for i in range(0, len(text), 10_000)],
                          vocab_size=8192, special_tokens=['<|endoftext|>'], show_progress=False)
  bpe.save_model(folder)
  fast = transformers.GPT2TokenizerFast(os.path.join(folder, 'vocab.json'),
                                        os.path.join(folder, 'merges.txt'))
  eos = fast.convert_tokens_to_ids('<|endoftext|>')
  torch.manual_seed(0)
  model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=len(fast), bos_token_id=eos, eos_token_id=eos)).eval()
  model.save_pretrained(folder)

  from research import config as config_lib  # pylint: disable=g-import-not-at-top
  from research.experiment import Experiment  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file(str(HERE / 'configs/lm.py'), 'gpt2')
  config.init.from_hf, config.data.path = folder, corpus
  config.data.store_dir = os.path.join(args.out, 'stores')
  config.model.dtype = 'float32'
  started = time.time()
  exp = Experiment(config, '')
  params = exp.runtime.whole(exp.fresh_state().params)
  import_seconds = time.time() - started
  prompt = text[1000:1400]
  ids = fast(prompt)['input_ids'][:64]
  same_ids = exp.task.vocab.encode(prompt)[:64] == ids
  from hf_gpt2_small import logit_agreement  # pylint: disable=g-import-not-at-top
  print(json.dumps({'vocab': len(fast), 'same_token_ids': bool(same_ids),
                    **logit_agreement(exp.task.model, params, model, np.array([ids], np.int32)),
                    'import_seconds': round(import_seconds, 1)}))


if __name__ == '__main__':
  main()
