"""word2vec (Mikolov et al. 2013) on a plain-text corpus.

Presets:
  skipgram  skip-gram, negative sampling (5), dim 100, window 5, min_count 5,
            sample 1e-3, 5 epochs, learning rate 0.025 decaying linearly to
            0.0001 (the word2vec C tool's and gensim's defaults).
  cbow      CBOW (mean of the context), the same on 64-word segments with 32
            shared noise draws a segment, 16 segments a round.
  tiny      the test-suite size; give it --config.data.path.
Expected on the 17M-word corpus (2 CPU cores, the whole process, beside gensim
4.4 with 2 workers): skip-gram 86.0 s, 2.37x gensim's 203.8 s, analogy 3CosAdd
0.418 (gensim 0.376); CBOW 65.3 s, 0.88x gensim's 57.5 s, analogy 0.300 (gensim
0.303). On one H200:
skip-gram 43.3 s, CBOW 37.9 s (gensim beside it on that machine's CPU: 99.3 s).
Every figure, with its date and commit: docs/benchmarks.md.

Run:  python launch.py --config=configs/word2vec.py:skipgram --workdir=runs/w2v-sg
Data: data.path is a .txt / .gz file, a directory of them or a glob (default:
      $SEQLAB_DATA/wiki2019_text8like/text8like.gz); data.eval_dir holds
      questions-words.txt, wordsim353.tsv and simlex999.txt (default:
      $SEQLAB_DATA/word_eval).
Hierarchical softmax: --config.model.negative=0.
"""
from research.config import base_config

PRESETS = ('skipgram', 'cbow')


def get_config(preset: str = 'skipgram'):
  c = base_config()
  c.task = 'word2vec'

  c.data.name = 'text'
  c.data.path = ''                # '': $SEQLAB_DATA/wiki2019_text8like/text8like.gz.
  c.data.eval_dir = ''            # '': $SEQLAB_DATA/word_eval.
  c.data.min_count = 5
  c.data.max_vocab = 0            # 0: no limit.
  c.data.max_sentence = 10000     # longer lines are cut (text8 is one line), as gensim does.
  c.data.encoding_errors = 'strict'  # strict | replace
  c.data.data_dir = ''            # TFDS's data_dir when text8 or imdb downloads.
  c.data.sample = 1e-3            # subsampling of frequent words; 0 keeps every word.
  c.data.epochs = 5               # with train.steps = 0.
  c.data.update_from = ''         # a finished run's workdir: continue it on data.path (online).
  # Center words per segment; a step takes several. A round's updates land at once,
  # so a frequent word's row would get the sum of all its updates there, which
  # diverges on long segments: each row's summed update is divided by
  # count^duplicate_power (its occurrences in the round). 1024 words sit on the edge
  # of diverging; 512 trains stably, through bf16-rounded products too.
  c.data.segment = 512
  c.data.duplicate_power = 0.5
  c.data.parallel_segments = 2    # segments updated side by side (a multiple of the devices).

  c.model.name = 'word2vec'
  c.model.dim = 100
  c.model.window = 5
  c.model.negative = 5            # 0: hierarchical softmax.
  c.model.cbow = False
  c.model.cbow_mean = True
  c.model.shared_negatives = 64   # noise words drawn once per segment, each weighted negative / this.

  # word2vec's own sparse SGD reads only the learning-rate schedule's keys.
  c.optimizer.schedule = 'linear'
  c.optimizer.learning_rate = 0.025
  c.optimizer.final_lr_fraction = 0.0001 / 0.025  # the C tool's floor.

  c.train.steps = 0               # 0: data.epochs passes over the corpus.
  c.train.batch_size = 16384      # center words per step.
  c.train.log_every = 100
  c.eval.every = 1_000_000        # evaluate at the end only.
  c.eval.num_samples = 3
  c.eval.analogy_restrict = 30000  # gensim's convention: the 30k most frequent words.
  c.eval.num_neighbours = 10
  c.checkpoint.every = 1000

  if preset == 'cbow':
    c.model.cbow = True
    c.data.segment, c.data.duplicate_power = 64, 0.0
    # The fewest shared noise draws that keep the analogy: the draws' products are
    # most of a CBOW step.
    c.model.shared_negatives = 32
    # Few, large rounds keep a GPU busy and keep the analogy; 32 segments diverge.
    c.data.parallel_segments = 16
    # gensim's 0.025, not the C tool's CBOW default of 0.05, which is too large
    # with this update rule (each context word gets the whole error).
  elif preset == 'tiny':
    c.data.path = c.data.eval_dir = ''
    c.data.min_count, c.data.segment, c.data.epochs, c.data.parallel_segments = 1, 8, 2, 4
    c.model.dim, c.model.window = 8, 2
    c.train.batch_size, c.train.log_every = 64, 2
    c.checkpoint.every = 4
    c.bench.warmup_steps, c.bench.steps, c.bench.matmul_size = 1, 2, 0
  elif preset not in PRESETS:
    raise ValueError(f'unknown preset {preset!r} for configs/word2vec.py; use '
                     + ', '.join(PRESETS + ('tiny',)))
  return c
