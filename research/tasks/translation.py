"""Sequence-to-sequence translation: source text in, target text out.

Serves the generated dates (characters) and real corpora (Multi30k, Tatoeba,
WMT14, any aligned files: research/data/parallel.py) with character, word or
SentencePiece vocabularies; reports exact match, token accuracy and, with
eval.bleu, sacrebleu BLEU, lowercased BLEU and chrF. A corpus's training pairs
are read by position from a store prepared once; a run keeps its vocabularies
in workdir/tokenizer_source/ and workdir/tokenizer_target/, so predict reads
nothing else.
"""
import dataclasses
import os
import tempfile

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from research import evaluators as evaluators_lib, huggingface, losses, models, plots, validation
from research.data import dates, parallel, pipeline, store as store_lib, synthetic
from research.data import vocab as vocab_lib
from research.data.vocab import BOS, PAD
from research.errors import UserError
from research.models import rnn_attention, rnn_seq2seq, transformer  # noqa: F401  (they register)
from research.parallel import to_host
from research.tasks.base import Task, register

GENERATED = ('dates', 'random')
CORPORA = ('multi30k', 'tatoeba', 'wmt14', 'parallel')
SIDES = ('source', 'target')


def _sources(d):
  """(training pairs: a Split held in memory, or a store spec; {split: Split} of the
  evaluation splits)."""
  if d.name in GENERATED:
    splits = (dates.load(d.seed, d.train_size, d.validation_size, d.test_size)
              if d.name == 'dates' else
              synthetic.load(d.seed, d.train_size, d.vocab_size, d.max_source_len,
                             d.max_target_len))
    return splits.pop('train'), splits
  if d.name == 'parallel':
    names = (d.validation_split, d.test_split)
    return parallel.local_spec(d), {n: parallel.read_split(d, n) for n in dict.fromkeys(names)}
  if d.name in CORPORA:
    from research.data import tfds_pairs  # pylint: disable=g-import-not-at-top  (TFDS: only here)
    return tfds_pairs.spec(d)
  raise UserError(f'unknown dataset {d.name!r} for translation; known: '
                  + ', '.join(GENERATED + CORPORA))


def prepare(d) -> list:
  """The store of the training pairs, made where none is yet ([] for generated data)."""
  train, _ = _sources(d)
  if isinstance(train, parallel.Split):
    return []
  return [store_lib.open_or_prepare(train, store_lib.root(d.store_dir)).path]


@register('translation')
class TranslationTask(Task):
  decodes = True
  evaluators = ('decoding', 'perplexity', 'bleu')

  @classmethod
  def validate(cls, config):
    super().validate(config)
    V = validation
    positive = ['model.embed_dim', 'model.encoder_dim', 'model.decoder_dim', 'model.attention_dim',
                'model.hidden_dim', 'model.num_layers', 'model.model_dim',
                'model.ff_dim', 'model.num_heads',
                'model.max_len', 'data.max_source_len',
                'data.max_target_len', 'data.train_size', 'data.vocab_size', 'eval.beam_size']
    V.check(config, [(k, V.integer(1)) for k in positive] + [
        ('model.qk_dim', V.integer(0)), ('model.v_dim', V.integer(0)),
        ('model.readout_dim', V.integer(0)), ('model.num_decoder_layers', V.integer(0)),
        ('data.batch_tokens', V.integer(0)), ('eval.length_penalty', V.number(0.0)),
        ('data.validation_size', V.integer(0)), ('data.test_size', V.integer(0))])
    m = config.model
    if m.get('model_dim') and m.get('num_heads'):  # optional: the recurrent models have neither.
      V.require(m.get('qk_dim') and m.get('v_dim') or m.model_dim % m.num_heads == 0,
                f'model.model_dim={m.model_dim} is not divisible by model.num_heads='
                f'{m.num_heads}; pick heads that divide it, or set model.qk_dim and model.v_dim')

  def __init__(self, config, runtime, workdir: str = ''):
    super().__init__(config, runtime, workdir)
    d = config.data
    self.max_src, self.max_tgt = d.max_source_len, d.max_target_len
    self.batch_tokens = d.batch_tokens
    self.row_multiple = runtime.data_size * config.train.microbatches
    self._data = None
    folders = [os.path.join(workdir, f'tokenizer_{side}') if workdir else '' for side in SIDES]
    if all(f and os.path.isfile(os.path.join(f, 'vocab.json')) for f in folders):
      # The run's own: predict reads nothing else.
      self.src_vocab, self.tgt_vocab = (vocab_lib.load(f) for f in folders)
    else:
      self._data = self._load()
      self.src_vocab, self.tgt_vocab = self._data.vocabs
      if workdir and jax.process_index() == 0:
        for vocab, folder in zip((self.src_vocab, self.tgt_vocab), folders):
          vocab_lib.save(vocab, folder)
    self.model = models.get(config.model.name, 'translation').from_config(
        config.model, len(self.src_vocab), len(self.tgt_vocab))
    if hasattr(self.model, 'check_lengths'):
      self.model.check_lengths(self.max_src, self.max_tgt)
    beam, alpha = config.eval.beam_size, config.eval.length_penalty
    never = self.tgt_vocab.never_emitted()
    if beam > 1:
      decode = lambda params, src: self.model.beam_search(
          params, src, self.max_tgt, beam, alpha, never)[::2]  # (tokens, attention)
    else:
      decode = lambda params, src: self.model.greedy_decode(params, src, self.max_tgt, never)
    self._decode = runtime.jit_data_parallel(decode)
    self._nll = runtime.jit_data_parallel(self._example_nll)

  @classmethod
  def prepare(cls, config) -> list:
    return prepare(config.data)

  # --- export ------------------------------------------------------------------------

  @classmethod
  def cannot_export(cls, config) -> str:
    return huggingface.marian_refusal(config.model)

  def export(self, params, out_dir: str) -> list:
    """A MarianMTModel checkpoint that transformers loads (research/huggingface.py),
    with a MarianTokenizer's files for a SentencePiece vocabulary, and the run's
    tokenizer in out_dir/seqlab_tokenizer/."""
    m = self.config.model
    if vocab_lib.fingerprint(self.src_vocab) != vocab_lib.fingerprint(self.tgt_vocab):
      raise UserError('MarianMTModel\'s export holds one vocabulary for source and target; this '
                      'run has two (data.shared_vocab=False)')
    if m.norm_epsilon != 1e-5:
      logging.warning('model.norm_epsilon=%g; Marian\'s layer norms use 1e-5, so its outputs '
                      'differ from this model\'s by that much', m.norm_epsilon)
    paths = huggingface.write(
        out_dir, huggingface.marian_config(len(self.tgt_vocab), m),
        huggingface.marian_tensors(params, m.num_layers, m.num_decoder_layers or m.num_layers))
    generation = huggingface.marian_generation(m.max_len, self.config.eval.beam_size)
    paths += huggingface.write_files(out_dir, {'generation_config.json': generation})
    folder = os.path.join(out_dir, 'seqlab_tokenizer')
    vocab_lib.save(self.tgt_vocab, folder)
    if isinstance(self.tgt_vocab, vocab_lib.SentencePieceVocab):
      paths += huggingface.write_marian_tokenizer(out_dir, self.tgt_vocab, m.max_len)
    return paths + [folder]

  # --- data ---------------------------------------------------------------------------

  @property
  def data(self) -> 'TranslationData':
    """The evaluation splits and the training pairs, loaded (their store prepared
    where none is yet) on first use."""
    if self._data is None:
      data = self._load()
      mine = [vocab_lib.fingerprint(v) for v in (self.src_vocab, self.tgt_vocab)]
      if mine != [vocab_lib.fingerprint(v) for v in data.vocabs]:
        raise UserError(f'the data\'s vocabularies differ from the ones this run trained '
                        f'with ({self.workdir}/tokenizer_*): the corpus or data.tokenizer '
                        'changed; use the run\'s data, or a new workdir')
      self._data = data
    return self._data

  def _load(self) -> 'TranslationData':
    d = self.config.data
    train, splits = _sources(d)
    if d.test_split not in splits:
      raise UserError(f'data.test_split {d.test_split!r} is not among the splits: '
                      + ', '.join(['train'] + list(splits)))
    if isinstance(train, parallel.Split):  # generated: vocabularies from all of it.
      if not train.sources:
        raise UserError(f'dataset {d.name!r} has an empty train split')
      with tempfile.TemporaryDirectory() as folder:
        vocabs = parallel.vocabularies(d, train.sources, train.targets, folder)
        pairs = parallel.MemoryPairs(parallel.encode_all(vocabs[0], train.sources),
                                     parallel.encode_all(vocabs[1], train.targets))
    else:
      stored = store_lib.open_or_prepare(train, store_lib.root(d.store_dir))
      vocabs, pairs = (stored.src_vocab, stored.tgt_vocab), stored.pairs
    arrays = {name: _encode(split, *vocabs, self.max_src, self.max_tgt)
              for name, split in splits.items()}
    # Results report the evaluation splits as validation/* and test/* (e.g. multi30k's
    # test2016, newstest2014): aliases, not encoded again.
    for alias, name in (('validation', d.validation_split),
                        ('test', d.test_split)):
      if name in splits:
        splits[alias], arrays[alias] = splits[name], arrays[name]
    truncated = {name: a['truncated'] for name, a in arrays.items()}
    truncated['train'] = int((pairs.source_lengths > self.max_src).sum()
                             + (pairs.target_lengths + 1 > self.max_tgt).sum())
    for name, count in truncated.items():
      if count and name != 'test':  # also reported as <split>/truncated in the metrics.
        logging.warning('%d %s pair(s) longer than data.max_source_len=%d or '
                        'data.max_target_len=%d tokens were truncated', count, name,
                        self.max_src, self.max_tgt)
    # A tuple made once: bucketed batching keys its per-epoch cache on it.
    lengths = tuple(np.maximum(np.minimum(pairs.source_lengths, self.max_src),
                               np.minimum(pairs.target_lengths + 1, self.max_tgt)).tolist())
    widths = ()
    if self.batch_tokens:  # token-budget batches: rows per bucket width.
      boundaries = tuple(d.bucket_boundaries) or (max(self.max_src, self.max_tgt),)
      widths = tuple(pipeline.bucket_length(n, boundaries) for n in lengths)
      for width in sorted(set(widths)):
        if pipeline.budget_rows(width, self.batch_tokens, self.row_multiple) < 1:
          raise UserError(f'data.batch_tokens={self.batch_tokens} holds no row of width {width} '
                          f'in multiples of {self.row_multiple} (devices x microbatches); use '
                          f'at least {width * self.row_multiple}')
    return TranslationData(vocabs, splits, arrays, pairs, truncated, lengths, widths)

  # --- training -------------------------------------------------------------

  def init(self, rng):
    src = jnp.zeros((2, self.max_src), jnp.int32)
    return self.model.init(rng, src, jnp.zeros((2, self.max_tgt), jnp.int32))

  @staticmethod
  def teacher_inputs(tgt):
    return np.concatenate([np.full_like(tgt[:, :1], BOS), tgt[:, :-1]], axis=1)

  def _example_nll(self, params, packed):
    """packed [N, S + 2T] (source, teacher inputs, targets) -> [N, 2]: summed NLL, tokens."""
    t = (packed.shape[1] - self.max_src) // 2
    src, tgt_in, tgt = packed[:, :-2 * t], packed[:, -2 * t:-t], packed[:, -t:]
    logits, _ = self.model.forward(params, src, tgt_in)
    nll, count, _ = jax.vmap(lambda l, y: losses.sequence_loss(l[None], y[None]))(logits, tgt)
    return jnp.stack([nll, count], axis=1)

  def perplexity(self, params, split: str) -> float:
    """exp(mean NLL per target token) under teacher forcing: the dev PPL of Vaswani et al."""
    arrays, bs = self.data.arrays[split], self.config.eval.batch_size
    packed = np.concatenate([arrays['src'], self.teacher_inputs(arrays['tgt']), arrays['tgt']],
                            axis=1)
    sums = sum(self.runtime.run_batched(self._nll, params, packed[i:i + bs]).sum(0)
               for i in range(0, len(packed), bs))
    return float(np.exp(sums[0] / sums[1]))

  def train_batch(self, step: int):
    """This process's rows of global batch `step`, read from the training pairs by
    position and padded (to the batch's bucket with data.bucket_boundaries)."""
    bs = self.config.train.batch_size
    boundaries = tuple(self.config.data.bucket_boundaries)
    data = self.data
    if self.batch_tokens:
      idx = pipeline.token_budget_batch(data.train_widths, self.batch_tokens, self.row_multiple,
                                        self.config.seed, step)
    elif boundaries:  # similar lengths together, padded to one of a few lengths.
      idx = pipeline.bucketed_batch_indices(data.train_lengths, bs, self.config.seed, step)
    else:
      idx = pipeline.batch_indices(len(data.train), bs, self.config.seed, step)
    src_width, tgt_width = self.max_src, self.max_tgt
    if self.batch_tokens or boundaries:  # the global batch sets the width: processes agree.
      width = (data.train_widths[idx[0]] if self.batch_tokens else  # one bucket a batch.
               pipeline.bucket_length(max(data.train_lengths[i] for i in idx), boundaries))
      src_width, tgt_width = min(width, self.max_src), min(width, self.max_tgt)
    idx = idx[pipeline.process_slice(len(idx))]
    sources, targets = data.train.rows(idx)
    src = parallel.padded(sources, self.max_src, add_eos=False)[0][:, :src_width]
    tgt = parallel.padded(targets, self.max_tgt, add_eos=True)[0][:, :tgt_width]
    return {'src': src, 'tgt_in': self.teacher_inputs(tgt), 'tgt_out': tgt}

  def loss(self, params, batch, rng):
    logits, _ = self.model.forward(params, batch['src'], batch['tgt_in'], rng=rng, train=True)
    return losses.sequence_loss(logits, batch['tgt_out'], self.config.model.label_smoothing)

  def units(self, batch):
    return {'examples': len(batch['src']), 'tokens': int((batch['tgt_out'] != PAD).sum())}

  # --- evaluation -------------------------------------------------------------

  def translate_ids(self, params, src):
    """Greedy decoding of an [N, S] id array, batched over all devices."""
    tokens, weights = [], []
    bs = self.config.eval.batch_size
    for start in range(0, len(src), bs):
      t, w = self.runtime.run_batched(self._decode, params, src[start:start + bs])
      tokens.append(t)
      weights.append(w)
    return np.concatenate(tokens), np.concatenate(weights)

  def decoded(self, params, split: str, cache: dict):
    """(token ids, detokenized hypotheses) of a split, decoded once an evaluation."""
    def decode():
      tokens, _ = self.translate_ids(params, self.data.arrays[split]['src'])
      return tokens, [self.tgt_vocab.decode(t) for t in tokens]
    return evaluators_lib.cached(cache, 'decoded', decode)

  def samples(self, params, split: str, n: int):
    data = self.data.splits[split]
    hyps = self.predict(params, data.sources[:n])
    return [(s, h, r) for s, h, r in zip(data.sources[:n], hyps, data.targets[:n])]

  def predict(self, params, lines):
    src, truncated = self.src_vocab.encode_batch(lines, self.max_src, add_eos=False)
    if truncated:  # to stderr: stdout holds one translation per input line, nothing else.
      tokenizer = self.config.data.tokenizer
      unit = 'characters' if tokenizer == 'char' else f'{tokenizer} tokens'
      logging.warning('%d input line(s) longer than data.max_source_len=%d %s were truncated '
                      'to it', truncated, self.max_src, unit)
    tokens, _ = self.translate_ids(params, src)
    return [self.tgt_vocab.decode(t) for t in tokens]

  def write_artifacts(self, params, workdir: str, num_heatmaps: int = 4):
    """Attention heatmaps (input chars x output chars) for a few test examples."""
    data = self.data.splits['test']
    src = self.data.arrays['test']['src'][:num_heatmaps]
    tokens, weights = self.translate_ids(params, src)
    paths = []
    if jax.process_index() != 0 or not np.any(weights):  # process 0 draws; no attention, no map.
      return paths
    for i in range(len(src)):
      out = self.tgt_vocab.decode(tokens[i])
      out_pieces = self.tgt_vocab.id_pieces(tokens[i]) + ['</s>']
      n_out = min(len(out_pieces), weights.shape[1])  # include the end-of-sequence step.
      n_in = int((src[i] != PAD).sum())
      path = os.path.join(workdir, 'plots', f'attention_test_{i}.png')
      plots.attention_heatmap(
          weights[i, :n_out, :n_in], self.src_vocab.pieces(data.sources[i])[:n_in],
          out_pieces[:n_out], path, title=f'{data.sources[i]!r} -> {out!r}')
      paths.append(path)
    if hasattr(self.model, 'attention_maps'):  # every layer and head, for the first sentence.
      paths += self._attention_maps(params, workdir, src[0], tokens[0], data.sources[0])
    return paths

  def _attention_maps(self, params, workdir, src, out_tokens, source_text):
    n_in, n_out = int((src != PAD).sum()), int((out_tokens != PAD).sum())
    tgt_in = self.teacher_inputs(out_tokens[None, :n_out])
    # Only process 0 draws: with its own copy of the (whole) parameters.
    maps = jax.device_get(self.model.attention_maps(to_host(params), src[None, :n_in], tgt_in))
    src_pieces = self.src_vocab.pieces(source_text)[:n_in]
    out_pieces = self.tgt_vocab.id_pieces(out_tokens[:n_out])
    if len(out_pieces) < n_out:
      out_pieces += ['</s>']
    in_pieces = ['<s>'] + out_pieces[:-1]
    paths = []
    for name, w in maps.items():  # [1, H, rows, cols]
      rows = src_pieces if name.startswith('encoder') else in_pieces
      cols = in_pieces if name.startswith('decoder') and name.endswith('/self') else src_pieces
      path = os.path.join(workdir, 'plots', 'attention_layers', name.replace('/', '_') + '.png')
      plots.attention_heads(w[0], cols, rows, path, title=f'{name}: {source_text!r}')
      paths.append(path)
    return paths


@dataclasses.dataclass
class TranslationData:
  """vocabs: the data's (source, target) vocabularies; splits and arrays: the
  evaluation splits as strings and as padded ids; train: the training pairs;
  truncated: pairs cut per split; train_lengths (and with data.batch_tokens,
  train_widths): each training pair's padded length (and bucket)."""
  vocabs: tuple
  splits: dict
  arrays: dict
  train: parallel.Pairs
  truncated: dict
  train_lengths: tuple
  train_widths: tuple


def _encode(split, src_vocab, tgt_vocab, max_src: int, max_tgt: int) -> dict:
  src, t1 = src_vocab.encode_batch(split.sources, max_src, add_eos=False)
  tgt, t2 = tgt_vocab.encode_batch(split.targets, max_tgt, add_eos=True)
  length = np.maximum((src != PAD).sum(1), (tgt != PAD).sum(1))
  return {'src': src, 'tgt': tgt, 'length': length, 'truncated': t1 + t2}
