"""Recurrent sequence-to-sequence translation on Multi30k (de -> en).

Presets:
  bahdanau  RNNsearch (Bahdanau et al. 2014): bidirectional GRU encoder, GRU
            decoder with additive attention, at the sizes of the public PyTorch
            tutorial (bentrevett/pytorch-seq2seq, notebook 3: emb 256, hidden
            512, dropout 0.5), with a SentencePiece vocabulary of 8000.
            Public reference: 28.3 lowercased BLEU on test2016; our target >= 30.
            Not yet measured here (issue #3 is in progress).
  tiny      the test-suite size; give it --config.data.path.

Run:  python launch.py --config=configs/seq2seq.py:bahdanau
Data: the raw Multi30k files are read from data.path (default: ../shared/data/multi30k
      when it exists); without it, the TFDS builder downloads them.
"""
import os

from research.config import base_config

_SHARED = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'multi30k')


def get_config(preset: str = 'bahdanau'):
  c = base_config()
  c.task = 'translation'

  c.data.name = 'multi30k'
  c.data.pair = 'de-en'
  c.data.path = os.path.normpath(_SHARED) if os.path.isdir(_SHARED) else ''
  c.data.data_dir = ''          # where TFDS keeps prepared data ('' = its default).
  c.data.tokenizer = 'sentencepiece'
  c.data.vocab_size = 8000
  c.data.spm_model_type = 'bpe'
  c.data.max_source_len = 64
  c.data.max_target_len = 64
  c.data.test_split = 'test2016'

  c.model.name = 'rnn_attention'
  c.model.embed_dim = 256
  c.model.encoder_dim = 512     # per direction.
  c.model.decoder_dim = 512
  c.model.attention_dim = 512
  c.model.dropout = 0.5
  c.model.label_smoothing = 0.0

  c.optimizer.name = 'adam'
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 200
  c.optimizer.schedule = 'cosine'
  c.optimizer.final_lr_fraction = 0.1
  c.optimizer.grad_clip_norm = 1.0

  c.train.steps = 2_300         # about 10 epochs of 29,000 pairs at batch 128.
  c.train.batch_size = 128
  c.train.log_every = 50
  c.eval.every = 500
  c.eval.batch_size = 256
  c.eval.num_samples = 3
  c.eval.bleu = True
  c.eval.beam_size = 1
  c.eval.length_penalty = 0.6
  c.checkpoint.every = 500

  if preset == 'tiny':
    c.data.path = ''
    c.data.vocab_size = 300
    c.data.max_source_len = c.data.max_target_len = 24
    c.model.embed_dim = c.model.encoder_dim = c.model.decoder_dim = c.model.attention_dim = 8
    c.model.dropout = 0.1
    c.train.steps, c.train.batch_size, c.train.log_every = 4, 8, 2
    c.eval.every, c.eval.batch_size, c.eval.num_samples = 4, 8, 1
    c.checkpoint.every = 4
    c.bench.warmup_steps, c.bench.steps = 1, 2
  elif preset != 'bahdanau':
    raise ValueError(f'unknown preset {preset!r} for configs/seq2seq.py; use bahdanau or tiny')
  return c
