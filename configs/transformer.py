"""The Transformer (Vaswani et al. 2017) on Multi30k de -> en.

Presets:
  multi30k  3 + 3 layers, d_model 256, 8 heads, d_ff 1024, dropout 0.1, label
            smoothing 0.1, one joint SentencePiece vocabulary of 8000 shared by
            the source, target and output embeddings; beam 4. Public reference:
            36.52 lowercased BLEU on test2016 (bentrevett/pytorch-seq2seq,
            3 + 3 layers, d 256; target >= 37 in <= 45 minutes). Expected on 2
            CPU cores, 38 min 47 s, 3000 steps: test2016 lowercased BLEU 38.28,
            sacrebleu BLEU 38.05, chrF 57.5, perplexity 6.09. Decoding test2016
            with beam 4: 29.06 sentences/s with the key/value cache, 1.46
            without. On one H200: 3 min 1 s whole, BLEU 38.95 in float32 and
            38.43 in bfloat16 (model.dtype).
  base      the paper's base model on its data, WMT14 en-de (TFDS's
            wmt14_translate, or data.name=parallel over a local copy; one shared
            BPE vocabulary of 37k): N=6, d_model 512, d_ff 2048, h=8, dropout
            0.1, label smoothing 0.1, warmup 4000, ~25k source plus ~25k target
            tokens a step (data.batch_tokens=25000), 100k steps, the mean of the
            last 5 checkpoints, beam 4 with length penalty 0.6; bfloat16 and
            cuDNN's fused attention on an NVIDIA GPU. Expected: newstest2014
            BLEU 27.3 (the paper's, on 8 P100s for 12 hours); not measured
            here. The recipe: docs/transformer.md.
  big       the paper's big model: d_model 1024, d_ff 4096, h=16, dropout 0.3, the
            same batches, 300k steps, the mean of the last 20 checkpoints, each
            layer rematerialized. Expected: 28.4 (the paper's); not measured.
  bench_gpu the base model at 64k target tokens a step (1024 random pairs of 64
            tokens), bfloat16 and cuDNN's fused attention, for --mode=benchmark
            on an accelerator. Measured on one H200 (jax 0.11.2): 1,033,933
            target tokens/s, MFU 0.308 against the 989 TFLOP/s bfloat16 peak
            (the target, 0.40, is not met), 14.4 GB of device memory (4.3 GB
            with model.remat=True).
  table3    the base point of the Table 3 sweep, sized for Multi30k on 2 cores;
            get_sweep('table3') gives rows (A)-(E). Expected: the 19 points in
            2 h 3 min 37 s on 2 CPU cores; base dev BLEU 27.27, perplexity 11.08.
  bench     the throughput shapes of ../shared/bench/torch_transformer.py: d 256,
            h 4, d_ff 1024, 3 + 3 layers, vocab 8000, batch 64 x 32, dropout 0.1,
            label smoothing 0.1, pre-LN, learned positions, shared embeddings;
            random tokens, no data. Expected on 2 CPU cores (Intel Xeon,
            2026-12-07), beside the peer: 2,923 / 3,220 target tokens/s,
            1.09x / 1.15x PyTorch 2.13 (2,682 / 2,795); MFU 0.45-0.51. The
            target, 1.3x, is not met there (1.66-1.70x on 2026-11-25's machine).
  tiny      the test-suite size; give it --config.data.path.

Run:  python launch.py --config=configs/transformer.py:multi30k
Every figure, with its date and commit: docs/benchmarks.md.
The learning rate follows the paper: d^-0.5 * min(step^-0.5, step * warmup^-1.5),
which is optimizer.schedule=rsqrt with learning_rate = (d * warmup)^-0.5
(optimizer.schedule=cosine with optimizer.name=adamw is the alternative).
"""
from research import sweep
from research.config import add_precision_keys, base_config, shipped_config

_SEQ2SEQ = shipped_config('seq2seq')

PRESETS = ('multi30k', 'base', 'big', 'table3', 'bench', 'bench_gpu')


def paper_learning_rate(model_dim: int, warmup: int) -> float:
  """The peak of d^-0.5 * min(step^-0.5, step * warmup^-1.5), reached at step = warmup."""
  return (model_dim * warmup) ** -0.5


TABLE3_WARMUP = 400


def table3_learning_rate(model_dim: int) -> float:
  """Half the paper's peak, as in the multi30k preset (post-LN at ~2k tokens a batch)."""
  return round(0.5 * paper_learning_rate(model_dim, TABLE3_WARMUP), 6)


def get_config(preset: str = 'multi30k'):
  c = base_config()
  c.task = 'translation'

  # The data, tokenizer and batching of configs/seq2seq.py, with one joint vocabulary so
  # that all embeddings can be shared.
  data = {'bench': 'bench', 'bench_gpu': 'bench', 'tiny': 'tiny'}.get(preset, 'bahdanau')
  c.data = _SEQ2SEQ.get_config(data).data
  c.data.shared_vocab = True

  c.model.name = 'transformer'
  c.model.num_layers = 3          # N, in the encoder and (by default) the decoder.
  c.model.num_decoder_layers = 0  # 0: the same as num_layers.
  c.model.model_dim = 256
  c.model.ff_dim = 1024
  c.model.num_heads = 8
  c.model.qk_dim = 0              # d_k per head; 0: model_dim / num_heads.
  c.model.v_dim = 0               # d_v per head; 0: model_dim / num_heads.
  c.model.dropout = 0.1
  c.model.attention_dropout = 0.0
  c.model.relu_dropout = 0.0      # the paper drops only sublayer outputs and embeddings.
  c.model.label_smoothing = 0.1
  c.model.pre_ln = False          # False: post-LN, as in the paper.
  c.model.positions = 'sinusoidal'  # sinusoidal | learned
  c.model.max_len = max(c.data.max_source_len, c.data.max_target_len)
  c.model.share_embeddings = 'all'  # none | output | all
  c.model.kv_cache = True         # incremental decoding; False reruns the prefix each step.
  c.model.attention_impl = 'xla'  # xla | cudnn (fused; an NVIDIA GPU in bfloat16) | auto.
  c.model.norm_epsilon = 1e-6     # layer norms' epsilon (Marian's: 1e-5).
  add_precision_keys(c.model)

  warmup = 1000
  c.optimizer.name = 'adam'
  c.optimizer.b2 = 0.98
  c.optimizer.eps = 1e-9
  c.optimizer.schedule = 'rsqrt'
  c.optimizer.warmup_steps = warmup
  # The peak: the paper's formula gives (256 * 1000)^-0.5 = 2e-3 here; half of it for
  # post-LN at a batch of only ~2k tokens.
  c.optimizer.learning_rate = 0.5 * paper_learning_rate(256, warmup)
  c.optimizer.grad_clip_norm = 0.0

  c.train.steps = 3000          # 128 sentences a step: about 13 epochs of Multi30k.
  c.train.batch_size = 128
  c.train.log_every = 100
  c.eval.every = 1500
  c.eval.batch_size = 256
  c.eval.num_samples = 3
  c.eval.bleu = True
  c.eval.beam_size = 4
  c.eval.length_penalty = 0.6
  c.eval.length_buckets = (7, 10, 13, 16)
  c.checkpoint.every = 500

  if preset in ('base', 'big', 'bench_gpu'):
    warmup = 4000
    c.model.num_layers, c.model.model_dim, c.model.ff_dim, c.model.num_heads = 6, 512, 2048, 8
    c.model.attention_impl = 'auto'  # cuDNN's fused attention where it runs.
    if preset == 'big':
      c.model.model_dim, c.model.ff_dim, c.model.num_heads, c.model.dropout = 1024, 4096, 16, 0.3
      c.model.remat = True
    c.optimizer.warmup_steps = warmup
    c.optimizer.learning_rate = paper_learning_rate(c.model.model_dim, warmup)
    c.train.steps = 300_000 if preset == 'big' else 100_000
    c.data.batch_tokens = 25_000  # per side: ~25k source and ~25k target tokens a step.
    c.eval.every, c.checkpoint.every = 5000, 5000
  if preset in ('base', 'big'):
    # The paper's data: WMT14 en-de (4.5M pairs), one shared BPE vocabulary of 37k
    # tokens, newstest2013 to validate and newstest2014 to test; TFDS's
    # wmt14_translate downloads it, data.name=parallel reads a local copy.
    c.data.name, c.data.pair, c.data.vocab_size = 'wmt14', 'en-de', 37_000
    c.data.validation_split, c.data.test_split = 'validation', 'test'
    c.data.max_source_len = c.data.max_target_len = c.model.max_len = 256
    c.data.bucket_boundaries = (16, 24, 32, 48, 64, 96, 128, 192, 256)
    c.data.tokenizer_sample = 500_000  # pairs SentencePiece learns from.
    # The paper averages the last 5 (base) or 20 (big) checkpoints, 10 minutes apart.
    c.checkpoint.every = 2000
    c.eval.average_last = 20 if preset == 'big' else 5
  if preset == 'bench_gpu':
    c.data.batch_tokens = 0
    c.data.train_size, c.data.max_source_len, c.data.max_target_len = 8192, 64, 64
    c.model.max_len = 64
    c.model.dtype = 'bfloat16'
    c.train.batch_size = 1024     # 1024 x 64 = 65,536 target tokens a step.
    c.bench.warmup_steps, c.bench.steps = 5, 20
  elif preset == 'table3':
    # Sized so that the 19 points fit in well under 3 hours on 2 CPU cores: a smaller
    # vocabulary (the output layer was half the step) and 800 steps (3.5 epochs).
    c.data.vocab_size = 4000
    c.model.num_layers, c.model.model_dim, c.model.ff_dim, c.model.num_heads = 2, 128, 512, 4
    c.optimizer.warmup_steps = TABLE3_WARMUP
    c.optimizer.learning_rate = table3_learning_rate(128)
    c.train.steps, c.eval.every, c.checkpoint.every = 800, 800, 400
    c.eval.beam_size = 1
  elif preset == 'bench':
    c.model.num_heads, c.model.pre_ln, c.model.positions = 4, True, 'learned'
    c.model.attention_dropout = c.model.relu_dropout = 0.1  # as nn.Transformer does.
    c.train.batch_size = 64
    c.bench.warmup_steps, c.bench.steps = 3, 20
  elif preset == 'tiny':
    c.model.num_layers, c.model.model_dim, c.model.ff_dim, c.model.num_heads = 2, 16, 32, 2
    c.train.steps, c.train.batch_size, c.train.log_every = 4, 4, 2
    c.eval.every, c.eval.batch_size, c.eval.num_samples, c.eval.beam_size = 4, 8, 1, 2
    c.checkpoint.every = 4
    c.bench.warmup_steps, c.bench.steps, c.bench.matmul_size = 1, 2, 128
  elif preset not in PRESETS:
    raise ValueError(f'unknown preset {preset!r} for configs/transformer.py; use '
                     + ', '.join(PRESETS + ('tiny',)))
  return c


# Vaswani et al. 2017, Table 3 (newstest2013 dev): (PPL, BLEU) per row; base 4.92 / 25.8.
TABLE3_ROWS = {
    'A': [{'model.num_heads': h} for h in (1, 2, 8, 16)],   # d_k = d_v = d_model / h.
    'B': [{'model.qk_dim': k} for k in (8, 16)],
    'C': ([{'model.num_layers': n} for n in (1, 3, 4)]
          + [{'model.model_dim': d,  # d_ff stays, as in the paper; the lr follows d^-0.5.
              'optimizer.learning_rate': table3_learning_rate(d)}
             for d in (64, 256)]
          + [{'model.ff_dim': f} for f in (256, 1024)]),
    'D': ([{'model.dropout': p} for p in (0.0, 0.2)]
          + [{'model.label_smoothing': e} for e in (0.0, 0.2)]),
    'E': [{'model.positions': 'learned'}],
}


def get_sweep(preset: str = 'table3'):
  """Table 3 at Multi30k scale: the base point, then rows (A)-(E)."""
  if preset != 'table3':
    return []
  return sweep.chain([{}], *TABLE3_ROWS.values())
