"""Human-written dates -> ISO dates with a character-level RNNsearch.

The default experiment: a bidirectional GRU encoder and a GRU decoder with
additive (Bahdanau) attention, trained on generated dates ("tuesday 3 march
2015", "3/3/15", "03-MAR-2015", ...) whose ISO forms ("2015-03-03") are the
targets. Test dates never occur in training. Nothing is downloaded.

Run:       python launch.py                  (same as --config=configs/dates.py)
Expected:  test/exact_match 1.000 on the 2,000 test dates (target 0.99), in
           71.4 s on 2 CPU cores with compilation and plots, validation at
           1.000 by step 500 (26.5 s); docs/benchmarks.md.
Presets:   `tiny` is the test-suite size (a few seconds).
Sweep:     python launch.py --sweep --sweep_parallel=1
           (decoder size x seed; `tiny` sweeps two decoder sizes).
"""
from research import sweep
from research.config import add_precision_keys, add_translation_keys, base_config


def get_config(preset: str = ''):
  c = base_config()
  c.task = 'translation'
  add_translation_keys(c)

  c.data.name = 'dates'
  c.data.train_size = 50_000
  c.data.validation_size = 1_000
  c.data.test_size = 2_000
  c.data.max_source_len = 32
  c.data.max_target_len = 11   # 'YYYY-MM-DD' and the end-of-sequence token.
  c.data.tokenizer = 'char'
  c.data.test_split = 'test'

  c.model.name = 'rnn_attention'
  c.model.attention = 'bahdanau'  # bahdanau | luong_dot | luong_general | luong_concat
  c.model.embed_dim = 32
  c.model.encoder_dim = 64     # per direction.
  c.model.decoder_dim = 128
  c.model.attention_dim = 64
  c.model.readout_dim = 0      # 0: no deep output layer before the softmax.
  c.model.tie_embeddings = False
  c.model.dropout = 0.0
  c.model.label_smoothing = 0.0
  add_precision_keys(c.model)

  c.optimizer.name = 'adam'
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.schedule = 'cosine'
  c.optimizer.final_lr_fraction = 0.05
  c.optimizer.grad_clip_norm = 1.0

  c.train.steps = 1_500
  c.train.batch_size = 128
  c.train.log_every = 100
  c.eval.every = 500
  c.eval.batch_size = 1_000
  c.eval.bleu = False          # exact match is the measure here.
  c.checkpoint.every = 500

  c.bench.warmup_steps = 10
  c.bench.steps = 100

  if preset == 'tiny':
    c.data.train_size, c.data.validation_size, c.data.test_size = 256, 20, 20
    c.model.embed_dim = c.model.encoder_dim = c.model.decoder_dim = c.model.attention_dim = 8
    c.train.steps, c.train.batch_size, c.train.log_every = 6, 8, 2
    c.eval.every, c.eval.batch_size, c.eval.num_samples = 3, 16, 2
    c.checkpoint.every = 2
    c.bench.warmup_steps, c.bench.steps, c.bench.matmul_size = 1, 2, 128
  elif preset:
    raise ValueError(f'unknown preset {preset!r} for configs/dates.py; use tiny')
  return c


def get_sweep(preset: str = ''):
  if preset == 'tiny':
    return sweep.axis('model.decoder_dim', [8, 12])
  return sweep.product(sweep.axis('model.decoder_dim', [32, 64, 128]),
                       sweep.axis('seed', [0, 1]))
