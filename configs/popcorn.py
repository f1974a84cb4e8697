"""Bag of Words Meets Bags of Popcorn: IMDB sentiment (25k train / 25k test).

Presets (each a representation + a classifier; see research/tasks/popcorn.py):
  bow          top-20k word counts + logistic regression
  tfidf        uni+bigram TF-IDF + logistic regression
  avg_vectors  averaged word2vec vectors + logistic regression
  centroids    bag of k-means centroids of the word vectors + logistic regression
  neural       a 2-layer Transformer encoder on frozen word2vec embeddings (6 epochs);
               a long review is scored over all its 256-word views
  tiny         the test-suite size; give it --config.data.path.

Run:  python launch.py --config=configs/popcorn.py:tfidf --workdir=runs/popcorn-tfidf
      python launch.py --config=configs/popcorn.py:avg_vectors --config.data.vectors=FILE.bin ...
      echo "A wonderful film." | python launch.py --config=configs/popcorn.py:tfidf --workdir=runs/popcorn-tfidf --mode=predict
Data: data.path is a directory in this project's TSV layout (train/test/unsup.tsv.gz)
      or Kaggle's (labeledTrainData.tsv, testData.tsv, unlabeledTrainData.tsv);
      default $SEQLAB_DATA/imdb; with neither, the TFDS builder downloads aclImdb.
All five in one go, with the combined ROC: python launch.py --reproduce=popcorn.
Expected test accuracy and wall time on 2 CPU cores: bow 0.8877 (18 s), tfidf
0.9099 (45 s; Wang & Manning's bigrams: 0.8916), avg_vectors 0.8535 (2 min 48 s,
word2vec included), centroids 0.8636 (57 s), neural 0.8928 (29 min 23 s); the
last two with --config.data.vectors from the avg_vectors run. The tutorial's
figures are ~0.84, ~0.83 and ~0.84. Every figure: docs/benchmarks.md.
"""
from research.config import add_precision_keys, base_config, shipped_config

PRESETS = ('bow', 'tfidf', 'avg_vectors', 'centroids', 'neural')
_WORD2VEC = shipped_config('word2vec')


def word2vec_config(c, preset: str):
  """The word2vec run that trains the vectors when data.vectors is empty: the
  skip-gram preset on the train + unlabeled reviews, 128 dimensions. Its seed,
  data path and encoding follow this config's."""
  w = _WORD2VEC.get_config('tiny' if preset == 'tiny' else 'skipgram')
  w.name = 'word2vec-imdb'
  w.seed = c.get_ref('seed')
  w.data.name, w.data.eval_dir = 'imdb', ''
  w.data.path = c.data.get_ref('path')
  w.data.encoding_errors = c.data.get_ref('encoding_errors')
  w.data.min_count, w.data.epochs = (1, 2) if preset == 'tiny' else (5, 5)
  w.model.dim, w.model.window = (8 if preset == 'tiny' else 128), 5
  if preset != 'tiny':  # the segments the popcorn numbers were measured with.
    w.data.segment, w.data.duplicate_power = 64, 0.0
  return w


def get_config(preset: str = 'tfidf'):
  if preset not in PRESETS + ('tiny',):
    raise ValueError(f'unknown preset {preset!r} for configs/popcorn.py; use '
                     + ', '.join(PRESETS + ('tiny',)))
  c = base_config()
  c.task = 'popcorn'

  c.data.name = 'imdb'
  c.data.path = ''                 # '': $SEQLAB_DATA/imdb, else download.
  c.data.data_dir = ''             # TFDS's data_dir when data.path is empty.
  c.data.encoding_errors = 'strict'  # strict | replace (bytes that are not UTF-8).
  c.data.validation_size = 2500    # labeled train reviews held out for periodic evaluation.
  c.data.features = {'neural': 'tokens', 'tiny': 'tfidf'}.get(preset, preset)
  # 0: every term. The encoder's embeddings are frozen, so its whole vocabulary costs no
  # trainable parameters: rare words keep their word2vec vectors instead of <unk>.
  c.data.max_features = 20000 if preset == 'bow' else 0
  c.data.min_df = 2                # terms in fewer training reviews are dropped.
  c.data.ngram_max = 2             # tfidf: unigrams and bigrams.
  c.data.max_length = 256          # tokens: the first and last 128 words of a review.
  # tokens, evaluation: a longer review is also read in max_length windows at this
  # stride, its logit the mean over all its views (0: the head and tail view only),
  # so the words the head and tail cut out count too.
  c.data.eval_stride = 128
  c.data.epochs = 10 if preset != 'neural' else 6  # with train.steps = 0.
  # Word vectors: a word2vec file, or '' to train them with data.word2vec (a whole
  # word2vec config: --config.data.word2vec.model.dim=...) in data.word2vec_dir.
  c.data.vectors = ''
  c.data.word2vec_dir = 'word2vec'  # where they are trained, relative to the workdir.
  c.data.words_per_cluster = 5     # centroids: k = vocabulary / 5, as the tutorial does.
  c.data.kmeans_iters = 20

  c.model.name = 'sentiment_encoder' if preset == 'neural' else 'logistic_regression'
  c.model.l2 = 1e-6                # logistic regression: 0.5 * l2 * |w|^2 added to the mean loss.
  c.model.model_dim = 128          # encoder (= the vectors' dim to start from them).
  c.model.ff_dim = 256
  c.model.num_heads = 4
  c.model.num_layers = 2
  c.model.dropout = 0.2
  c.model.init_from_vectors = preset == 'neural'
  # Fine-tuned embeddings overfit the 22.5k training reviews; frozen ones do not.
  c.model.freeze_embeddings = preset == 'neural'
  add_precision_keys(c.model)     # the encoder's; logistic regression stays float32.

  c.optimizer.name = 'adam'
  c.optimizer.learning_rate = 0.05 if c.model.name == 'logistic_regression' else 1e-3
  c.optimizer.schedule = 'cosine'
  c.optimizer.warmup_steps = 0 if c.model.name == 'logistic_regression' else 100
  c.optimizer.grad_clip_norm = 0.0 if c.model.name == 'logistic_regression' else 1.0

  c.train.steps = 0                # 0: data.epochs passes over the training reviews.
  c.train.batch_size = 128 if c.model.name == 'logistic_regression' else 64
  c.train.log_every = 100
  c.eval.every = 1000
  c.eval.batch_size = 1024 if c.model.name == 'logistic_regression' else 128
  c.eval.num_samples = 0
  c.checkpoint.every = 1000

  c.bench.warmup_steps = 5
  c.bench.steps = 50

  if preset == 'tiny':
    c.data.path = ''
    c.data.validation_size, c.data.min_df, c.data.epochs = 4, 1, 20
    c.model.model_dim, c.model.ff_dim, c.model.num_heads, c.model.num_layers = 8, 16, 2, 1
    c.data.max_length, c.data.eval_stride = 16, 8
    c.train.batch_size, c.train.log_every = 8, 5
    c.eval.every, c.checkpoint.every = 20, 20
    c.bench.warmup_steps, c.bench.steps = 1, 2
  c.data.word2vec = word2vec_config(c, preset)
  return c
