"""Recurrent sequence-to-sequence translation on Multi30k (de -> en).

Presets:
  lstm      Sutskever et al. 2014: 2-layer LSTM encoder-decoder, source reversed,
            emb 256, hidden 512 (bentrevett notebook 1 sizes), dropout 0.3, 2200
            steps, beam 5. Public reference: 13.8 lowercased BLEU (target
            >= 15). Expected: test2016 lowercased BLEU 18.33, sacrebleu 18.21,
            chrF 35.5, in 34 min 25 s on 2 CPU cores.
  gru_context
            Cho et al. 2014: GRU encoder-decoder whose context vector feeds every
            decoder step and the output layer (bentrevett notebook 2 sizes), with
            the lstm preset's recipe. Public reference: 20.6 (target >= 22).
            Expected: test2016 lowercased BLEU 25.54, sacrebleu 25.32, chrF
            43.7, in 33 min 4 s on 2 CPU cores.
  bahdanau  RNNsearch (Bahdanau et al. 2014): bidirectional GRU encoder, GRU
            decoder with additive attention, at the sizes of the public PyTorch
            tutorial (bentrevett/pytorch-seq2seq, notebook 3: emb 256, hidden
            512, dropout 0.5), with a SentencePiece vocabulary of 8000 and the
            paper's deep output (a maxout layer, here 256 units) before the
            softmax, which also makes the output layer ~5x cheaper.
            Public reference: 28.3 lowercased BLEU on test2016 (target >= 30).
            Expected: test2016 lowercased BLEU 36.89, sacrebleu 36.67, chrF
            55.8, in 29 min 48 s on 2 CPU cores.
  luong_dot, luong_general, luong_concat
            Luong et al. 2015 global attention with input feeding, over the
            same encoder (2 x 256 per direction so dot scores fit), with the
            bahdanau recipe. Expected on 2 CPU cores, test2016 lowercased /
            sacrebleu BLEU and wall time: concat 36.75 / 36.51 (19 min 50 s),
            dot 35.72 / 35.53 (18 min 22 s), general 35.55 / 35.37 (17 min 34 s).
  bench     the shapes of ../shared/bench/torch_rnn_attention.py (emb 256, hidden 512,
            vocab 8000, batch 64 x 32) on random tokens, no data; with --mode=benchmark.
            Expected on 2 CPU cores (Intel Xeon, 2026-12-07): 2,068 / 2,037
            target tokens/s, 2.22x PyTorch 2.13 (932 / 919) run beside it (3.3-3.4x
            on 2026-11-25's machine); like for like with the peer
            (--config.model.readout_dim=0 --config.model.dropout=0): 1,896-1,968,
            2.3x.
  tiny      the test-suite size; give it --config.data.path.

Run:  python launch.py --config=configs/seq2seq.py:bahdanau
Data: the raw Multi30k files are read from data.path, else $SEQLAB_DATA/multi30k;
      with neither, the TFDS builder downloads them.
Every figure, with its date and commit: docs/benchmarks.md.
"""
from research.config import add_precision_keys, add_translation_keys, base_config


PRESETS = ('lstm', 'gru_context', 'bahdanau', 'luong_dot', 'luong_general', 'luong_concat',
           'bench')


def get_config(preset: str = 'bahdanau'):
  c = base_config()
  c.task = 'translation'
  add_translation_keys(c)

  c.data.name = 'multi30k'      # multi30k | tatoeba | wmt14 | parallel (aligned files) | ...
  c.data.pair = 'de-en'
  c.data.path = ''              # '': $SEQLAB_DATA/multi30k, else download.
  c.data.tokenizer = 'sentencepiece'
  c.data.vocab_size = 8000
  c.data.max_source_len = 64
  c.data.max_target_len = 64
  c.data.test_split = 'test2016'
  c.data.bucket_boundaries = (16, 24, 32, 48, 64)

  c.model.name = 'rnn_attention'
  c.model.attention = 'bahdanau'  # bahdanau | luong_dot | luong_general | luong_concat
  c.model.embed_dim = 256
  c.model.encoder_dim = 512     # per direction.
  c.model.decoder_dim = 512
  c.model.attention_dim = 512
  c.model.readout_dim = 256     # deep output (maxout) before the 8000-way softmax.
  # The models without attention (model.name = rnn_seq2seq):
  c.model.rnn = 'lstm'          # lstm (Sutskever et al. 2014) | gru_context (Cho et al. 2014)
  c.model.hidden_dim = 512      # their context size: 256, 512 or 1024.
  c.model.num_layers = 2
  c.model.reverse_source = True
  c.model.dropout = 0.5
  c.model.tie_embeddings = False  # True: the softmax reuses the target embeddings.
  c.model.label_smoothing = 0.0
  add_precision_keys(c.model)

  c.optimizer.name = 'adam'
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 200
  c.optimizer.schedule = 'cosine'
  c.optimizer.final_lr_fraction = 0.1
  c.optimizer.grad_clip_norm = 1.0

  c.train.steps = 1_800         # about 8 epochs of 29,000 pairs at batch 128 (45 min budget).
  c.train.batch_size = 128
  c.train.log_every = 50
  c.eval.every = 900
  c.eval.batch_size = 256
  c.eval.num_samples = 3
  c.eval.length_buckets = (7, 10, 13, 16)  # BLEU by source words: 1-7, ..., 17+.
  c.checkpoint.every = 300

  if preset in ('lstm', 'gru_context'):
    c.model.name, c.model.rnn = 'rnn_seq2seq', preset
  if preset in ('lstm', 'gru_context'):
    # The context-vector models underfit with the attention model's recipe, so they
    # train longer with less dropout and decode with a beam, as Sutskever et al. did.
    c.model.dropout = 0.3
    c.train.steps, c.eval.every = 2200, 1100
    c.eval.beam_size = 5
  if preset.startswith('luong_'):
    c.model.attention = preset
    c.model.encoder_dim = 256   # 2 x 256 = decoder_dim, as dot scores need.
  if preset == 'bench':  # the peer's shapes (../shared/bench/torch_rnn_attention.py); no data.
    c.data.name, c.data.path, c.data.tokenizer = 'random', '', 'word'
    c.data.test_split = 'test'
    c.data.train_size = 4096
    c.data.max_source_len = c.data.max_target_len = 32
    c.data.bucket_boundaries = ()
    c.train.batch_size = 64
    c.bench.warmup_steps, c.bench.steps = 3, 20
  elif preset == 'tiny':
    c.data.path = ''
    c.data.vocab_size = 300
    c.data.max_source_len = c.data.max_target_len = 24
    c.data.bucket_boundaries = (8, 24)
    c.model.embed_dim = c.model.encoder_dim = c.model.decoder_dim = c.model.attention_dim = 8
    c.model.readout_dim = 4
    c.model.dropout = 0.1
    c.train.steps, c.train.batch_size, c.train.log_every = 4, 4, 2
    c.eval.every, c.eval.batch_size, c.eval.num_samples = 4, 8, 1
    c.checkpoint.every = 4
    c.bench.warmup_steps, c.bench.steps, c.bench.matmul_size = 1, 2, 128
  elif preset not in PRESETS:
    raise ValueError(f'unknown preset {preset!r} for configs/seq2seq.py; use '
                     + ', '.join(PRESETS + ('tiny',)))
  return c
