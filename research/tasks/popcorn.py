"""Bag of Words Meets Bags of Popcorn: IMDB sentiment, five ways, one task.

data.features picks the representation; model.name the classifier:
  bow          top-k word counts, L2-normalized          + logistic_regression
  tfidf        uni+bigram TF-IDF (sublinear tf)          + logistic_regression
  avg_vectors  the mean of a review's word vectors       + logistic_regression
  centroids    counts of a review's words per k-means cluster of the word
               vectors (k = vocabulary / data.words_per_cluster), TF-IDF weighted
                                                         + logistic_regression
  tokens       the review's first and last words         + sentiment_encoder, a
               Transformer encoder (evaluated also over windows of a long
               review: data.eval_stride)
Logistic regression is trained by Adam on the mean log loss plus model.l2/2 |w|^2
(scikit-learn's LogisticRegression has C = 1 / (l2 N)).

Word vectors come from data.vectors (a word2vec text or binary file), or else
from a stage (base.py's `stages`): the run data.word2vec configures (a whole
word2vec config) on the train + unlabeled reviews, an ordinary run that the
loop trains first in WORKDIR/word2vec (data.word2vec_dir, relative to the
workdir: '../word2vec' shares one among a sweep's points; resumable like any
run, so a finished one is reused).

Splits: data.validation_size reviews of the labeled train set (seeded) are held
out for the periodic evaluation; the rest train; the test split is the 25k test
reviews. The fitted representation (vocabulary and document frequencies, word
vectors and their standardization, clusters) is saved in WORKDIR/featurizer/:
predict then reads no review and no word vectors, and eval featurizes only the
reviews it scores. Outputs: test/accuracy, test/auc, test/f1 in results.json,
plots/roc.png, submission.csv (Kaggle's id,sentiment) and test_scores.npz
(ids, labels, probabilities: the combined ROC of `configs/papers/popcorn.py`).
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from research import layers, losses, models, plots, validation, word_vectors
from research.data import bag, imdb, pipeline
from research.errors import UserError
from research.evaluation import clustering
from research.models import sentiment, transformer
from research.tasks.base import Task, register

FEATURES = ('bow', 'tfidf', 'avg_vectors', 'centroids', 'tokens')
PAD, UNK = 0, 1
FEATURIZER = 'featurizer'  # the workdir's folder of the fitted representation.


@register('popcorn')
class PopcornTask(Task):
  evaluators = ('classification',)

  @classmethod
  def validate(cls, config):
    super().validate(config)
    V = validation
    V.check(config, [('data.features', V.one_of(*FEATURES)),
                     ('data.validation_size', V.integer(0)), ('data.max_features', V.integer(0)),
                     ('data.min_df', V.integer(1)), ('data.ngram_max', V.integer(1)),
                     ('data.max_length', V.integer(1)), ('data.eval_stride', V.integer(1)),
                     ('data.epochs', V.integer(0)), ('data.words_per_cluster', V.integer(1)),
                     ('data.kmeans_iters', V.integer(1)), ('model.l2', V.number(0.0)),
                     ('model.model_dim', V.integer(1)), ('model.ff_dim', V.integer(1)),
                     ('model.num_heads', V.integer(1)), ('model.num_layers', V.integer(1))])
    V.require(config.train.steps > 0 or config.data.epochs > 0,
              'train.steps=0 and data.epochs=0: give the run a length, train.steps >= 1 or '
              'data.epochs >= 1')

  def __init__(self, config, runtime, workdir: str = ''):
    super().__init__(config, runtime, workdir)
    d, m = config.data, config.model
    if d.features not in FEATURES:
      raise UserError(f'data.features must be one of {", ".join(FEATURES)}, not {d.features!r}')
    self.classifier = models.get(m.name, 'popcorn')
    self.linear = self.classifier is sentiment.LogisticRegression
    self._predict = runtime.jit_data_parallel(
        lambda p, b: (lambda logits: (jax.nn.sigmoid(logits), logits))(self.logits(p, b)))
    if self.linear == (d.features == 'tokens'):
      raise UserError('model.name=sentiment_encoder goes with data.features=tokens, and '
                      'logistic_regression with the rest')
    self._reviews, self._docs, self._arrays, self._windows = None, {}, {}, {}
    self.init_vectors = None
    folder = os.path.join(workdir, FEATURIZER) if workdir else ''
    if folder and os.path.isfile(os.path.join(folder, 'featurizer.json')):
      # The run's own: predict reads no reviews, eval only the ones it scores.
      self.fitted = _load_fitted(folder)
    else:
      self.fitted = self._fit(self.docs('train'))
      if folder and jax.process_index() == 0:
        _save_fitted(self.fitted, folder)
    self.dim, self.describe = self.fitted['dim'], self.fitted['describe']
    if 'init_rows' in self.fitted:  # model.init_from_vectors: the embeddings' first rows.
      self.init_vectors = (self.fitted['init_rows'], self.fitted['init_table'])
    self.num_train = self.fitted['num_train']
    self.featurize, self.window_views = self._featurizer(self.fitted)

  def num_steps(self) -> int:
    """train.steps, or with 0, data.epochs passes over the training reviews."""
    return self.config.train.steps or -(
        -self.config.data.epochs * self.num_train // self.config.train.batch_size)

  # --- data ---------------------------------------------------------------------------

  def reviews(self) -> dict:
    """{split: (texts, labels)} and the test ids: the labeled train reviews less the
    data.validation_size held out (seeded), and the test reviews; read once."""
    if self._reviews is None:
      d = self.config.data
      reviews = imdb.load(d.path, ('train', 'test'), d.encoding_errors, d.data_dir)
      for split, r in reviews.items():
        if r.skipped_empty:
          logging.warning('imdb %s: %d empty reviews skipped', split, r.skipped_empty)
        if split == 'train' and np.any(r.labels < 0):
          raise UserError('imdb train: every review needs a 0/1 label')
      train, test = reviews['train'], reviews['test']
      order = np.random.default_rng(d.seed).permutation(len(train.ids))
      held, kept = order[:d.validation_size], order[d.validation_size:]
      pick = lambda rows: ([train.texts[i] for i in rows], train.labels[rows])
      self._reviews = {'train': pick(kept), 'validation': pick(held),
                       'test': (test.texts, test.labels)}
      self.ids = {'test': test.ids}
      logging.info('popcorn %s: %d train, %d validation, %d test reviews', d.features,
                   len(kept), len(held), len(test.texts))
    return self._reviews

  def docs(self, split: str) -> list:
    """A split's reviews as tokens (imdb.tokenize), made on first use."""
    if split not in self._docs:
      self._docs[split] = [imdb.tokenize(t) for t in self.reviews()[split][0]]
    return self._docs[split]

  def split(self, split: str):
    """A split's features and labels, featurized on first use; None for an empty
    validation split."""
    if split not in self._arrays:
      docs = self.docs(split)
      if split == 'validation' and not docs:
        return None
      labels = self.reviews()[split][1].astype(np.float32)
      self._arrays[split] = dict(self.featurize(docs), label=labels)
      if split != 'train' and self.window_views:
        self._windows[split] = self.window_views(docs)
    return self._arrays[split]

  # --- features ---------------------------------------------------------------------

  def _fit(self, train_docs) -> dict:
    """The representation fitted on the training reviews: what featurizes any review
    (saved in the workdir). The training reviews' features, where fitting made
    them, are kept for the first use."""
    d, m = self.config.data, self.config.model
    out = {'features': d.features, 'num_train': len(train_docs)}
    if d.features in ('bow', 'tfidf'):
      n_max = 1 if d.features == 'bow' else d.ngram_max
      vocab = bag.build_vocabulary(train_docs, n_max, d.max_features, d.min_df)
      return {**out, 'terms': vocab.terms, 'df': vocab.df, 'num_docs': vocab.num_docs,
              'n_max': n_max, 'dim': len(vocab.terms),
              'describe': f'{len(vocab.terms)} terms (n <= {n_max})'}
    if d.features == 'tokens':
      vocab = bag.build_vocabulary(train_docs, 1, d.max_features, d.min_df)
      words = ['<pad>', '<unk>'] + vocab.terms
      if m.init_from_vectors:
        wv = self.word_vectors()
        if wv.vectors.shape[1] != m.model_dim:
          raise UserError(f'model.init_from_vectors: vectors have {wv.vectors.shape[1]} '
                          f'dimensions, model.model_dim is {m.model_dim}')
        known = {w: i for i, w in enumerate(wv.words)}
        rows = np.array([known.get(w, -1) for w in words])
        logging.info('embeddings: %d of %d from word vectors', int((rows >= 0).sum()), len(rows))
        # Kept with the featurizer: a rerun before the first checkpoint starts from them too.
        out.update(init_rows=rows, init_table=wv.vectors[np.maximum(rows, 0)])
      return {**out, 'words': words, 'dim': len(words),
              'describe': f'{len(words)} tokens, length {d.max_length}'}
    wv = self.word_vectors()
    words = {w: i for i, w in enumerate(wv.words)}
    if d.features == 'avg_vectors':
      # Standardized with the training reviews' mean and spread, as one would for
      # any dense features under logistic regression.
      train = bag.average_vectors(train_docs, words, wv.vectors).value
      mean, std = train.mean(0), np.maximum(train.std(0), 1e-6)
      self._train_features = train
      return {**out, 'words': wv.words, 'vectors': wv.vectors, 'mean': mean, 'std': std,
              'dim': wv.vectors.shape[1], 'describe': f'{len(wv.words)} word vectors'}
    k = max(2, len(wv.words) // d.words_per_cluster)
    _, cluster, inertia = jax.jit(clustering.kmeans, static_argnums=(1, 3))(
        wv.unit, k, jax.random.PRNGKey(self.config.seed), d.kmeans_iters)
    cluster = np.asarray(cluster)
    logging.info('k-means: %d clusters of %d words, inertia %.1f -> %.1f', k, len(wv.words),
                 float(inertia[0]), float(inertia[-1]))
    train = bag.centroid_counts(train_docs, words, cluster, k)
    self._train_features = train
    return {**out, 'words': wv.words, 'cluster': cluster, 'k': k,
            'df': np.bincount(train.index[train.value > 0], minlength=k),
            'num_docs': len(train_docs), 'dim': k,
            'describe': f'{k} centroids of {len(wv.words)} word vectors'}

  def _featurizer(self, fitted):
    """(docs -> arrays, docs -> window views or None) from the fitted representation."""
    features = fitted['features']
    first = lambda docs: docs is self._docs.get('train') and getattr(
        self, '_train_features', None) is not None  # the training reviews, made by _fit.
    if features in ('bow', 'tfidf'):
      vocab = bag.Vocabulary(fitted['terms'], fitted['df'], fitted['num_docs'], fitted['n_max'])
      return lambda docs: _sparse(bag.weight(bag.term_counts(docs, vocab), features, vocab)), None
    if features == 'tokens':
      return self._token_featurizer(fitted['words'])
    words = {w: i for i, w in enumerate(fitted['words'])}
    if features == 'avg_vectors':
      mean, std, vectors = fitted['mean'], fitted['std'], fitted['vectors']
      average = lambda docs: (self._train_features if first(docs)
                              else bag.average_vectors(docs, words, vectors).value)
      return lambda docs: _sparse(bag.dense((average(docs) - mean) / std)), None
    k = fitted['k']
    vocab = bag.Vocabulary([str(i) for i in range(k)], fitted['df'], fitted['num_docs'], 1)
    counts = lambda docs: (self._train_features if first(docs)
                           else bag.centroid_counts(docs, words, fitted['cluster'], k))
    return lambda docs: _sparse(bag.weight(counts(docs), 'tfidf', vocab)), None

  def _token_featurizer(self, words):
    d = self.config.data
    self.words = words
    index = {w: i for i, w in enumerate(words)}
    half = d.max_length // 2

    def encode(docs):
      out = np.zeros((len(docs), d.max_length), np.int32)
      for i, tokens in enumerate(docs):
        ids = [index.get(t, UNK) for t in tokens]
        if len(ids) > d.max_length:  # the opening and the verdict, usually at the end.
          ids = ids[:half] + ids[len(ids) - (d.max_length - half):]
        out[i, :len(ids)] = ids
      return {'tokens': out}

    def window_views(docs):
      """Every max_length window, at data.eval_stride, of each review longer than
      max_length (the last window ends at the review's end): the words the head and
      tail view cuts out. {'tokens' [W, max_length], 'owner' [W]: the review's row}."""
      length, rows, owner = d.max_length, [], []
      for i, tokens in enumerate(docs):
        if len(tokens) > length:
          ids = [index.get(t, UNK) for t in tokens]
          starts = list(range(0, len(ids) - length, d.eval_stride)) + [len(ids) - length]
          rows.extend(ids[s:s + length] for s in starts)
          owner.extend([i] * len(starts))
      return {'tokens': np.array(rows, np.int32).reshape(-1, length),
              'owner': np.array(owner, np.int32)}
    return encode, window_views if d.eval_stride > 0 else None

  @classmethod
  def stages(cls, config, workdir: str) -> list:
    """With data.vectors empty, the word2vec run data.word2vec configures, in
    WORKDIR/word2vec (data.word2vec_dir), until the featurizer is fitted; only for
    features made of word vectors, or embeddings that start from them."""
    d = config.data
    uses_vectors = d.features in ('avg_vectors', 'centroids') or (
        d.features == 'tokens' and config.model.init_from_vectors)
    if not uses_vectors or d.vectors or not workdir or os.path.isfile(
        os.path.join(workdir, FEATURIZER, 'featurizer.json')):
      return []
    return [(config.data.word2vec, _vectors_run(config, workdir))]

  def word_vectors(self) -> word_vectors.WordVectors:
    d = self.config.data
    if d.vectors:
      if not os.path.exists(d.vectors):
        raise UserError(f'data.vectors: no such file {d.vectors!r}')
      return word_vectors.load(d.vectors)
    if not self.workdir:
      raise UserError('data.vectors is empty and there is no workdir to train word2vec in')
    path = os.path.join(_vectors_run(self.config, self.workdir), 'vectors.bin')
    if not os.path.isfile(path):
      raise UserError(f'no word vectors at {path}: train this config with launch.py, which '
                      'runs its word2vec stage first, or give data.vectors')
    return word_vectors.load(path)

  # --- the model ----------------------------------------------------------------------

  def _encoder(self):
    m = self.config.model
    dtype, param_dtype = layers.model_dtypes(m)
    sizes = transformer.Sizes(model_dim=m.model_dim, ff_dim=m.ff_dim, num_heads=m.num_heads,
                              qk_dim=m.model_dim // m.num_heads, v_dim=m.model_dim // m.num_heads,
                              dropout=m.dropout, pre_ln=True, dtype=dtype,
                              param_dtype=param_dtype, remat=m.remat)
    return self.classifier(self.dim, sizes, m.num_layers, m.freeze_embeddings)

  def init(self, rng):
    if self.linear:
      return self.classifier.init(self.dim)
    tokens = jnp.zeros((1, self.config.data.max_length), jnp.int32)
    params = self._encoder().init({'params': rng}, tokens)['params']
    if self.init_vectors is not None:
      rows, vectors = self.init_vectors
      # Rows of words with a vector start from it; the rest keep their random init.
      table = jnp.where(jnp.asarray(rows >= 0)[:, None], jnp.asarray(vectors, jnp.float32),
                        params['embed']['embedding'])
      params = dict(params, embed={'embedding': table})
    return params

  def logits(self, params, batch, rng=None):
    if self.linear:
      return self.classifier.logits(params, batch['index'], batch['value'])
    train = rng is not None
    return self._encoder().apply({'params': params}, batch['tokens'], train=train,
                                 rngs={'dropout': rng} if train else {})

  def loss(self, params, batch, rng):
    logits = self.logits(params, batch, rng)
    per_example = losses.logistic_loss(logits, batch['label'])
    weight = jnp.asarray(batch['label'].shape[0], jnp.float32)
    total = jnp.sum(per_example)
    if self.linear:
      total = total + 0.5 * self.config.model.l2 * jnp.sum(params['w'] ** 2) * weight
    correct = jnp.sum((logits > 0) == (batch['label'] > 0.5))
    return total, weight, {'accuracy': correct.astype(jnp.float32)}

  # --- data ---------------------------------------------------------------------------

  def train_batch(self, step: int):
    """Rows of global batch `step`: epoch-wise permutations seeded by (seed, epoch)."""
    b, n = self.config.train.batch_size, self.num_train
    start = step * b
    rows = []
    while len(rows) < b:
      epoch, offset = divmod(start + len(rows), n)
      perm = np.random.default_rng([self.config.seed, epoch]).permutation(n)
      rows.extend(perm[offset:offset + b - len(rows)])
    rows = np.asarray(rows)[pipeline.process_slice(b)]
    return {k: v[rows] for k, v in self.split('train').items()}

  def units(self, batch):
    out = {'examples': int(batch['label'].shape[0])}
    if 'tokens' in batch:
      out['tokens'] = int((batch['tokens'] > 0).sum())
    return out

  # --- evaluation ---------------------------------------------------------------------

  def probabilities(self, params, arrays, windows=None) -> np.ndarray:
    """P(positive) of every row. With `windows` (see window_views), a long review's
    logit is the mean over its views: the head and tail one, and each window."""
    p, logits = self._predictions(params, arrays)
    if windows is None or not len(windows['owner']):
      return p
    _, extra = self._predictions(params, windows)
    owner, n = windows['owner'], len(logits)
    mean = ((logits + np.bincount(owner, extra, n)) / (1 + np.bincount(owner, minlength=n)))
    return (1 / (1 + np.exp(-mean))).astype(np.float32)

  def _predictions(self, params, arrays):
    """(P(positive), logit) of every row, in batches over the devices."""
    keys = [k for k in arrays if k not in ('label', 'owner')]
    n, size, out = len(arrays[keys[0]]), self.config.eval.batch_size, []
    for i in range(0, n, size):
      batch = {k: arrays[k][i:i + size] for k in keys}
      p, logits = self.runtime.run_batched(self._predict, params, batch)
      out.append((np.asarray(p), np.asarray(logits, np.float64)))
    return tuple(np.concatenate(parts) for parts in zip(*out))

  def labels_of(self, split: str):
    """A split's labels (-1 where unknown), or None when the task has no such split."""
    rows = self.split(split)
    return None if rows is None else rows['label']

  def probabilities_of(self, params, split):
    """A split's probabilities, kept for the same parameters: the final test
    evaluation and the artifacts (submission, ROC) share one pass."""
    leaf = jax.tree.leaves(params)[0]  # held, so its identity cannot be reused.
    cached = getattr(self, '_cached', None)
    if cached is None or cached[0] != split or cached[1] is not leaf:
      self._cached = cached = (split, leaf, self.probabilities(params, self.split(split),
                                                                self._windows.get(split)))
    return cached[2]

  def samples(self, params, split: str, n: int):
    """(review opening, predicted, true) for the first n reviews of a split."""
    if not n or self.split(split) is None:
      return []
    arrays = {k: v[:n] for k, v in self.split(split).items()}
    windows = self._windows.get(split)
    if windows is not None:
      windows = {k: v[windows['owner'] < n] for k, v in windows.items()}
    p = self.probabilities(params, arrays, windows)
    texts = self.docs(split)
    return [(' '.join(texts[i][:20]) if i < len(texts) else '', f'{q:.3f}', str(int(label)))
            for i, (q, label) in enumerate(zip(p, arrays['label']))]

  def final_results(self, params):
    return {'features': self.describe}

  def predict(self, params, lines):
    """P(positive) and the label of each review given on stdin, one per line."""
    docs = [imdb.tokenize(line) for line in lines]
    p = self.probabilities(params, self.featurize(docs),
                           self.window_views(docs) if self.window_views else None)
    return [f'{q:.4f} {"positive" if q > 0.5 else "negative"}' for q in p]

  def write_artifacts(self, params, workdir: str):
    p = self.probabilities_of(params, 'test')  # collective: on every process.
    if jax.process_index() != 0:
      return []
    labels = self.split('test')['label']
    sub = os.path.join(workdir, 'submission.csv')
    with open(sub + '.tmp', 'w') as f:  # Kaggle's sample: "12311_10",0
      f.write('id,sentiment\n')
      f.writelines(f'"{i}",{int(q > 0.5)}\n' for i, q in zip(self.ids['test'], p))
    os.replace(sub + '.tmp', sub)
    scores = os.path.join(workdir, 'test_scores.npz')
    np.savez(scores, ids=np.array(self.ids['test']), labels=labels, probabilities=p)
    paths = [sub, scores]
    if np.all(labels >= 0):
      paths.append(plots.roc_curves({self.config.name or self.config.data.features: (labels, p)},
                                    os.path.join(workdir, 'plots', 'roc.png')))
    return paths


def _vectors_run(config, workdir: str) -> str:
  """The workdir of the word2vec stage: data.word2vec_dir relative to the run's."""
  return os.path.normpath(os.path.join(workdir, config.data.word2vec_dir or 'word2vec'))


def _save_fitted(fitted: dict, folder: str):
  """featurizer.npz (the arrays) and featurizer.json (the rest) in `folder`."""
  os.makedirs(folder, exist_ok=True)
  arrays = {k: v for k, v in fitted.items() if isinstance(v, np.ndarray)}
  np.savez(os.path.join(folder, 'featurizer.tmp.npz'), **arrays)
  os.replace(os.path.join(folder, 'featurizer.tmp.npz'), os.path.join(folder, 'featurizer.npz'))
  rest = {k: v for k, v in fitted.items() if k not in arrays}
  with open(os.path.join(folder, 'featurizer.json.tmp'), 'w', encoding='utf-8') as f:
    json.dump(rest, f, ensure_ascii=False)
  os.replace(os.path.join(folder, 'featurizer.json.tmp'), os.path.join(folder, 'featurizer.json'))


def _load_fitted(folder: str) -> dict:
  try:
    with open(os.path.join(folder, 'featurizer.json'), encoding='utf-8') as f:
      fitted = json.load(f)
    with np.load(os.path.join(folder, 'featurizer.npz')) as arrays:
      fitted.update({k: arrays[k] for k in arrays.files})
  except (OSError, ValueError) as e:
    raise UserError(f'could not read the featurizer in {folder}: {e}') from None
  return fitted


def _sparse(s: bag.Sparse) -> dict:
  return {'index': s.index, 'value': s.value}
