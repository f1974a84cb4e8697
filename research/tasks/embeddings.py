"""Word embeddings: the word2vec and GloVe tasks.

Word embeddings: word2vec on a plain-text corpus, evaluated on analogies and
word similarity (research/evaluation/word_vectors.py).

Training follows the word2vec C tool and gensim: each epoch subsamples frequent
words afresh (its own seed), the kept stream is cut into segments of
`data.segment` center words (plus `model.window` words of context on each
side), and the learning rate decays linearly to optimizer.final_lr_fraction of
its start over the run. The update is word2vec's sparse SGD, not an optax
optimizer: `train_step` applies each segment's row updates in turn (a lax.scan
over the batch's segments), so a step touches only the rows its words use.

Each step runs rounds: `data.parallel_segments` segments at a time, split over
the devices, with their summed updates applied to every copy of the tables
before the next round. The result does not depend on the number of devices.

train.steps = 0 means `data.epochs` passes over the corpus (num_steps).

Online training (gensim's build_vocab(update=True) then train): with
data.update_from=DIR, a finished run's DIR/model.npz is the starting point;
the new corpus's words that reach min_count join the vocabulary (old words
keep their rows, counts add up), and training runs on the new text.
"""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from research import models, plots, validation, word_vectors
import research.data as data_lib
from research.data import corpus as corpus_lib
from research.data import cooccur, imdb, pipeline, sources, text8, TEXT8LIKE
from research.data import store as store_lib
from research.data import words as words_lib
from research.errors import UserError
from research.evaluation import word_vectors as wv_eval
from research.models import glove as _glove  # noqa: F401  (registers)
from research.models.word2vec import Word2Vec, huffman_tree
from research.parallel import to_host
from research.tasks.base import Rejected, Task, register

# The pictures of Mikolov et al. 2013b (Figure 2) and "The amazing power of word vectors".
WORD_GROUPS = {
    'countries and capitals': [
        ('france', 'paris'), ('germany', 'berlin'), ('italy', 'rome'), ('spain', 'madrid'),
        ('russia', 'moscow'), ('japan', 'tokyo'), ('china', 'beijing'), ('greece', 'athens'),
        ('poland', 'warsaw'), ('portugal', 'lisbon'), ('turkey', 'ankara')],
    'man and woman': [
        ('man', 'woman'), ('king', 'queen'), ('uncle', 'aunt'), ('brother', 'sister'),
        ('father', 'mother'), ('son', 'daughter'), ('he', 'she'), ('boy', 'girl')],
}
MODEL_FILE = 'model.npz'
EVAL_DIR = 'word_eval'  # the evaluation sets' default folder under $SEQLAB_DATA.
EVAL_FILES = {'analogy': 'questions-words.txt', 'ws353': 'wordsim353.tsv',
              'simlex999': 'simlex999.txt'}


class WordVectorTask(Task):
  """What word2vec and GloVe share: evaluation, queries, saved vectors and a run
  counted in epochs. Subclasses set self.corpus, self.eval_sets and
  self.steps_per_epoch and define vectors()."""
  eval_splits = ('',)  # results are analogy/*, similarity/*: no split prefix.
  evaluators = ('analogy', 'similarity')
  export_hint = ('Its vectors are in the workdir already, in the word2vec formats gensim reads '
                 '(vectors.txt, vectors.bin: KeyedVectors.load_word2vec_format)')
  optimizer_keys = ('learning_rate', 'schedule', 'warmup_steps', 'final_lr_fraction')

  @classmethod
  def validate(cls, config):
    super().validate(config)
    V = validation
    V.check(config, [('model.dim', V.integer(1)), ('data.min_count', V.integer(1)),
                     ('data.max_vocab', V.integer(0)), ('data.max_sentence', V.integer(1)),
                     ('data.epochs', V.integer(0)), ('eval.num_neighbours', V.integer(1))])
    V.require(config.train.steps > 0 or config.data.epochs > 0,
              'train.steps=0 and data.epochs=0: give the run a length, train.steps >= 1 or '
              'data.epochs >= 1')

  @classmethod
  def prepare(cls, config) -> list:
    d = config.data
    words = _load_corpus(d)
    paths = [words.store.path]
    if cls.name == 'glove':
      paths.append(_cooccurrences(d, words).path)
    return paths

  def num_steps(self) -> int:
    return self.config.train.steps or self.config.data.epochs * self.steps_per_epoch

  @staticmethod
  def _read_eval_sets(directory):
    directory = data_lib.local_path(directory, EVAL_DIR)
    if not directory:
      return {}
    if not os.path.isdir(directory):
      raise UserError(f'data.eval_dir {directory!r} does not exist; expected '
                      + ', '.join(EVAL_FILES.values()) + ' in it')
    sets = {}
    for name, filename in EVAL_FILES.items():
      path = os.path.join(directory, filename)
      if os.path.isfile(path):
        read = wv_eval.read_analogies if name == 'analogy' else wv_eval.read_pairs
        sets[name] = read(path)
    if not sets:
      raise UserError(f'data.eval_dir {directory!r} has none of: ' + ', '.join(EVAL_FILES.values()))
    return sets

  def samples(self, params, split: str, n: int):
    """A few analogies from the evaluation set, with the model's answers."""
    del split
    wv = self.vectors(params)
    out = []
    for section, questions in self.eval_sets.get('analogy', [])[:n]:
      for a, b, c, d in questions:
        if all(x in wv.index for x in (a, b, c)):
          best = wv.nearest([b, c], [a], topn=1)[0][0]
          out.append((f'{b} - {a} + {c}', best, d))
          break
    return out

  def predict(self, params, lines):
    """'paris' -> its nearest words; 'king - man + woman' -> the analogy's answers."""
    wv = self.vectors(params)
    answers = []
    for line in lines:
      positive, negative = _parse_query(line.lower())
      if not positive:
        answers.append('')
        continue
      try:
        best = wv.nearest(positive, negative, topn=self.config.eval.num_neighbours)
        answers.append(', '.join(f'{word} {score:.3f}' for word, score in best))
      except UserError as e:
        answers.append(Rejected(str(e)))
    return answers

  def write_artifacts(self, params, workdir: str):
    if jax.process_index() != 0:
      return []
    wv = self.vectors(params)
    paths = [os.path.join(workdir, 'vectors.txt'), os.path.join(workdir, 'vectors.bin')]
    word_vectors.save(wv, paths[0], 'word2vec')
    word_vectors.save(wv, paths[1], 'word2vec_binary')
    paths += self.extra_artifacts(params, workdir)
    vectors = {w: wv.vectors[wv.index[w]] for pairs in WORD_GROUPS.values()
               for pair in pairs for w in pair if w in wv.index}
    plot = plots.word_pairs_pca(vectors, WORD_GROUPS,
                                os.path.join(workdir, 'plots', 'word_pairs_pca.png'),
                                title=f'{self.config.name}: PCA of word pairs')
    return paths + ([plot] if plot else [])

  def extra_artifacts(self, params, workdir):
    del params, workdir
    return []


@register('word2vec')
class Word2VecTask(WordVectorTask):

  @classmethod
  def validate(cls, config):
    super().validate(config)
    V = validation
    V.check(config, [('model.window', V.integer(1)), ('model.negative', V.integer(0)),
                     ('model.shared_negatives', V.integer(1)), ('data.sample', V.number(0.0))])

  def init_opt_state(self, params):
    return ()  # plain SGD on the rows a step touches: no optimizer state.

  def __init__(self, config, runtime, workdir: str = ''):
    super().__init__(config, runtime, workdir)
    d, m = config.data, config.model
    self.previous = _load_previous(d.update_from, m.dim)
    self.corpus = _load_corpus(d, self.previous and (self.previous['words'],
                                                     self.previous['counts']))
    c = self.corpus
    logging.info('corpus %s: %d words, vocabulary %d (min_count %d), %d sentences', d.path,
                 c.raw_words, c.vocab_size, d.min_count, c.sentences)
    if m.negative and m.shared_negatives < 1:
      raise UserError(f'model.shared_negatives={m.shared_negatives}: a segment needs at least '
                      'one noise draw')
    self.model = models.get(m.name, 'word2vec')(
        c.vocab_size, m.dim, m.window, m.negative, m.cbow, m.cbow_mean, m.shared_negatives)
    self.keep = corpus_lib.keep_probabilities(c.counts, d.sample).astype(np.float32)
    self.noise_cdf = jnp.asarray(np.cumsum(corpus_lib.noise_distribution(c.counts)),
                                 jnp.float32)
    if not m.negative:
      self.huffman = tuple(jnp.asarray(a) for a in huffman_tree(c.counts))
    self.segment = d.segment
    bs = config.train.batch_size
    if bs % self.segment:
      raise UserError(f'train.batch_size={bs} must be a multiple of data.segment={self.segment}')
    self.rows = bs // self.segment
    self.together = d.parallel_segments
    if self.rows % self.together or self.together % runtime.num_devices:
      raise UserError(f'data.parallel_segments={self.together} must divide the '
                      f'{self.rows} segments of a batch and be a multiple of the '
                      f'{runtime.num_devices} device(s)')
    self.expected_kept = float((c.counts * self.keep).sum())  # per epoch.
    self.steps_per_epoch = max(1, math.ceil(self.expected_kept / bs))
    self.stream = words_lib.Subsampled(c, self.keep, config.seed,
                                       (self.num_steps() - 1) // self.steps_per_epoch)
    logging.info('%.0f words kept per epoch (sample %g): %d steps of %d words an epoch',
                 self.expected_kept, d.sample, self.steps_per_epoch, bs)
    self.eval_sets = self._read_eval_sets(d.eval_dir)

  # --- training ---------------------------------------------------------------------

  def init(self, rng):
    params = self.model.init(rng)
    if self.previous:  # online training: the saved rows, then fresh ones for new words.
      for name in ('input', 'output'):
        old = jnp.asarray(self.previous[name])
        params[name] = params[name].at[:len(old)].set(old)
    return params

  def train_batch(self, step: int):
    """[rows, segment + 2W] tokens, sentence ids and validity: this process's rows,
    read from the epoch's subsampled stream (words_lib.Subsampled)."""
    epoch, index = divmod(step, self.steps_per_epoch)
    w, length, bs = self.model.window, self.segment, self.config.train.batch_size
    start = index * bs
    lo = max(start - w, 0)
    tokens, sentence = self.stream.range(epoch, lo, start + bs + w)
    stop = lo + len(tokens)  # the epoch's stream may end before the batch does.
    end = min(start + bs, stop)  # centers stop here.
    first = start + length * np.arange(self.rows)[pipeline.process_slice(self.rows)]
    pos = first[:, None] + np.arange(-w, length + w)[None]
    inside = (pos >= 0) & (pos < stop)
    is_center = np.zeros(pos.shape, bool)
    is_center[:, w:w + length] = pos[:, w:w + length] < end
    safe = np.clip(pos - lo, 0, max(len(tokens) - 1, 0))
    if not len(tokens):  # past the stream's end: nothing inside, any id serves.
      tokens, sentence = np.zeros(1, np.int32), np.zeros(1, np.int32)
    return {'tokens': tokens[safe], 'sentence': np.where(inside, sentence[safe], -1),
            'valid': inside, 'center': is_center}

  def units(self, batch):
    kept = int(batch['center'].sum())
    raw_per_kept = self.corpus.raw_words / max(self.expected_kept, 1.0)
    return {'examples': kept, 'words_effective': kept, 'words': int(kept * raw_per_kept)}

  def train_step(self, state, batch, schedule):
    """(state, batch) -> (state, metrics): each segment's sparse SGD update in turn."""
    rng = jax.random.fold_in(state.rng, state.step)
    lr = schedule(state.step)
    model = self.model
    rows, together = batch['tokens'].shape[0], self.together

    def updates_for(params, tokens, sentence, valid, center, reduced, negatives):
      if model.negative:
        return model.segment_updates(params, tokens, sentence, valid, reduced, negatives, lr,
                                     center_mask=center)
      return self._huffman_updates(params, tokens, sentence, valid, center, reduced, lr)

    def one_round(params, xs):
      """`together` segments side by side (split over the devices); their updates are
      summed into every copy of the tables."""
      loss, n, updates = jax.vmap(updates_for, in_axes=(None,) + (0,) * 6)(params, *xs)
      updates = {name: (ids.reshape(-1), deltas.reshape(-1, deltas.shape[-1]))
                 for name, (ids, deltas) in updates.items()}
      # A row updated k times in the round moves by its summed update / k^power: plain
      # sums of a frequent word's many updates, all computed at the same point, diverge.
      power = self.config.data.duplicate_power
      if power:
        def scaled(name, ids, deltas):
          count = jnp.zeros(params[name].shape[0]).at[ids].add(1.0)
          return ids, deltas / jnp.maximum(count[ids], 1.0)[:, None] ** power
        updates = {name: scaled(name, *u) for name, u in updates.items()}
      size = sum(jnp.vdot(d, d) for _, d in updates.values())
      return Word2Vec.apply(params, updates), (loss.sum(), n.sum(), size)

    # Round i takes rows i, i + rows / together, ...: far apart in the stream, like the C
    # tool's threads, and (rows being split over devices in blocks) one per device block.
    split = lambda a: a.reshape((together, rows // together) + a.shape[1:]).swapaxes(0, 1)
    draws = model.segment_noise(rng, rows, self.segment, self.noise_cdf)  # the whole step's.
    xs = tuple(split(a) for a in (batch['tokens'], batch['sentence'], batch['valid'],
                                  batch['center']) + draws)
    # Two rounds per loop iteration: XLA overlaps the second round's gathers and masks
    # with the first's scatters, for the same parameters bit for bit.
    params, (loss, n, size) = jax.lax.scan(one_round, state.params, xs, unroll=2)
    n = jnp.maximum(n.sum(), 1.0)
    metrics = {'loss': loss.sum() / n, 'learning_rate': lr,
               'grad_norm': jnp.sqrt(size.sum()) / jnp.maximum(lr, 1e-12)}
    return state.replace(step=state.step + 1, params=params), metrics

  def vectors(self, params) -> word_vectors.WordVectors:
    return word_vectors.WordVectors(self.corpus.words, to_host(params['input']))

  def extra_artifacts(self, params, workdir):
    """Everything online training needs (data.update_from): both tables and the counts."""
    path = os.path.join(workdir, MODEL_FILE)
    np.savez(path + '.tmp.npz', words=np.array(self.corpus.words), counts=self.corpus.counts,
             input=to_host(params['input']),
             output=to_host(params['output']))
    os.replace(path + '.tmp.npz', path)
    return [path]

  def _huffman_updates(self, params, tokens, sentence, valid, center, reduced, lr):
    model = self.model
    w = model.window
    centers, contexts, cmask = model.windows(tokens, sentence, valid, reduced)
    cmask = cmask & center[w:-w, None]
    words, labels, tmask = Word2Vec.huffman_targets(centers, *self.huffman)
    return model.loss_and_updates(params, centers, contexts, cmask, words, labels, tmask, lr)


@register('glove')
class GloVeTask(WordVectorTask):
  """GloVe: co-occurrence counts once, then `data.epochs` shuffled passes of
  sparse AdaGrad over the nonzero entries: train.batch_size entries a step, in
  rounds of `data.round` entries whose updates land at once."""

  @classmethod
  def validate(cls, config):
    super().validate(config)
    V = validation
    V.check(config, [('data.window', V.integer(1)), ('data.round', V.integer(1)),
                     ('model.x_max', V.number(0.0, open_low=True)),
                     ('model.alpha', V.number(0.0, open_low=True))])

  def __init__(self, config, runtime, workdir: str = ''):
    super().__init__(config, runtime, workdir)
    d, m = config.data, config.model
    self.corpus = _load_corpus(d)
    c = self.corpus
    counts = _cooccurrences(d, c)
    self.rows, self.cols, self.values = counts.rows, counts.cols, counts.values
    logging.info('co-occurrence: %d nonzero entries over a vocabulary of %d (window %d), '
                 'counted in %.1f s', len(self.values), c.vocab_size, d.window,
                 counts.meta['count_seconds'])
    self.model = models.get(m.name, 'glove')(c.vocab_size, m.dim, m.x_max, m.alpha)
    bs = config.train.batch_size
    runtime.check_batch_size(bs)
    self.round = d.round
    if bs % self.round or self.round % runtime.num_devices:
      raise UserError(f'data.round={self.round} must divide train.batch_size={bs} and be a '
                      f'multiple of the {runtime.num_devices} device(s)')
    self.steps_per_epoch = max(1, math.ceil(len(self.values) / bs))
    self._orders = pipeline.EpochAhead(self._shuffle, self.steps_per_epoch, self.num_steps())
    self.eval_sets = self._read_eval_sets(d.eval_dir)

  def init(self, rng):
    return self.model.init(rng)

  def init_opt_state(self, params):
    return self.model.init_gradsq(params)

  def _shuffle(self, epoch: int):
    return np.random.default_rng([self.config.seed, epoch]).permutation(len(self.values))

  def train_batch(self, step: int):
    order, index = self._orders.at(step)
    bs = self.config.train.batch_size
    order = order[index * bs:(index + 1) * bs]
    live = np.zeros(bs, np.float32)
    live[:len(order)] = 1.0
    order = np.pad(order, (0, bs - len(order)))  # the epoch's last batch: padding entries.
    rows = pipeline.process_slice(bs)
    return {'rows': self.rows[order][rows], 'cols': self.cols[order][rows],
            'x': self.values[order][rows], 'live': live[rows]}

  def units(self, batch):
    return {'examples': int(batch['live'].sum()), 'entries': int(batch['live'].sum())}

  def train_step(self, state, batch, schedule):
    """(state, batch) -> (state, metrics): the batch's rounds of AdaGrad in turn."""
    lr = schedule(state.step)

    def one_round(carry, xs):
      loss, grads, sq_norm = self.model.loss_and_grads(carry[0], *xs)
      return self.model.adagrad(*carry, grads, lr), (loss, sq_norm)

    # Round i takes entries i, i + k, ... (k rounds): the batch is shuffled, and each
    # device's block of it gives every round the same share. Rounds of a few thousand
    # entries keep their [round, D] temporaries in cache.
    k = batch['rows'].shape[0] // self.round
    xs = tuple(batch[n].reshape(self.round, k).T for n in ('rows', 'cols', 'x', 'live'))
    (params, gradsq), (loss, sq_norm) = jax.lax.scan(
        one_round, (state.params, state.opt_state), xs)
    n = jnp.maximum(batch['live'].sum(), 1.0)
    metrics = {'loss': loss.sum() / n, 'learning_rate': lr, 'grad_norm': jnp.sqrt(sq_norm.sum())}
    return state.replace(step=state.step + 1, params=params, opt_state=gradsq), metrics

  def vectors(self, params) -> word_vectors.WordVectors:
    """W + W~, as the paper and glove.c (model 2) save them."""
    host = to_host({'w': params['w'], 'w_tilde': params['w_tilde']})
    return word_vectors.WordVectors(self.corpus.words, host['w'] + host['w_tilde'])

  def extra_artifacts(self, params, workdir):
    path = os.path.join(workdir, 'vectors.glove.txt')
    word_vectors.save(self.vectors(params), path, 'glove')
    return [path]


def _load_previous(workdir: str, dim: int):
  """A finished run's model.npz, to continue training it on new text."""
  if not workdir:
    return None
  path = os.path.join(workdir, MODEL_FILE)
  if not os.path.isfile(path):
    raise UserError(f'data.update_from: no {MODEL_FILE} in {workdir!r}; train that run to the end first')
  with np.load(path) as f:
    previous = {k: f[k] for k in ('words', 'counts', 'input', 'output')}
  previous['words'] = previous['words'].tolist()
  if previous['input'].shape[1] != dim:
    raise UserError(f'data.update_from: {path} has vectors of size {previous["input"].shape[1]}, '
                    f'model.dim is {dim}')
  if len(previous['output']) != len(previous['words']):
    raise UserError(f'data.update_from: {path} was trained with hierarchical softmax; '
                    'online training needs negative sampling')
  return previous


def _load_corpus(d, base=None) -> words_lib.Words:
  """The corpus's words, from its store (prepared where none is yet): data.name
  'text' the files at data.path; 'text8' the text8 file (data.path, a directory
  holding text8[.zip|.gz], else downloaded), in pieces of data.max_sentence
  words as its TFDS builder cut it; 'imdb' IMDB's train and unlabeled reviews
  (research.data.imdb), one per line, cleaned as popcorn cleans them."""
  store_dir = d.store_dir
  return words_lib.open_words(_spec(d), store_dir, d.min_count, d.max_vocab, base)


def _cooccurrences(d, words) -> cooccur.Cooccurrences:
  """GloVe's counts for this corpus and vocabulary, from their store (counted where
  none is yet, in data.cooccur_memory_mb)."""
  spec = cooccur.CooccurSpec(words, d.window, d.symmetric, d.cooccur_memory_mb)
  return store_lib.open_or_prepare(spec, store_lib.root(d.store_dir))


def _spec(d) -> words_lib.WordSpec:
  if d.name == 'text8':
    return words_lib.file_spec(text8.source_file(d.path, d.data_dir), d.max_sentence)
  if d.name == 'imdb':  # the labeled train and unlabeled reviews, cleaned as popcorn cleans them.
    local = data_lib.local_path(d.path, 'imdb')

    def lines():
      reviews = imdb.load(d.path, ('train', 'unsup'), d.encoding_errors, d.data_dir)
      return (' '.join(imdb.tokenize(t)) for r in reviews.values() for t in r.texts)
    if local and not os.path.isdir(local):
      raise UserError(f'imdb: {local!r} is not a directory')
    fingerprint = sources.tree_fingerprint(local) if local else 'download'
    return words_lib.lines_spec('imdb', fingerprint + d.encoding_errors, lines, d.max_sentence)
  if d.name != 'text':
    raise UserError(f'unknown data.name {d.name!r} for word2vec; use text, text8 or imdb')
  path = data_lib.local_path(d.path, TEXT8LIKE)
  if not path:
    raise UserError('data.path: give the corpus (a .txt / .gz file, a directory or a glob), '
                    f'set {data_lib.DATA_ENV} to a folder holding {TEXT8LIKE}, or download text8 '
                    'with --config.data.name=text8')
  return words_lib.file_spec(path, d.max_sentence, d.encoding_errors)


def _parse_query(line: str):
  """'a - b + c' -> (['a', 'c'], ['b']); a bare word is one positive term."""
  positive, negative, sign = [], [], '+'
  for token in line.replace('+', ' + ').replace(' - ', ' - ').split():
    if token in '+-':
      sign = token
    else:
      (positive if sign == '+' else negative).append(token)
      sign = '+'
  return positive, negative
