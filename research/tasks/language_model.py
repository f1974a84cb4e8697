"""Language modelling: a decoder-only Transformer on a text corpus.

Data (research/data/lm_corpus.py): prepared token stores of one corpus or a
weighted mixture, each document ended by </s>; the first 90% of the tokens
train, the next 5% validate, the last 5% test (text8's 90M / 5M / 5M). A run
keeps its tokenizer in workdir/tokenizer/, so predict reads nothing else, and
eval only the validation and test tokens.

Tokens (data.tokenizer): 'char' (the corpus's own characters, 27 for text8:
a-z and space, after the 4 reserved ids), 'byte', 'word' (the data.vocab_size
most frequent), 'sentencepiece' (BPE, trained on the corpus's first 10M
characters) or 'huggingface' (a Hugging Face tokenizer folder, GPT-2's among
them: data.tokenizer_path, else init.from_hf's).

init.from_hf starts a fresh run from a local GPT-2 checkpoint
(research/huggingface.py); a resumed run reads only its own checkpoints.

Batches are data.context + 1 tokens from random offsets of the training split,
a pure function of (seed, step), read from the store by position. Evaluation
scores every token of a split once (the first data.context predict from what
precedes them in their window): in non-overlapping windows, or with
data.eval_stride < context, in sliding windows of which each scores only its
last eval_stride tokens. Metrics: bits per character (bpc, from the summed
log-loss over the split's characters, for any tokenizer) and perplexity per
token. eval.validation_tokens and eval.test_tokens bound the tokens scored from
each split's start (0: all).
"""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from research import huggingface, models, validation
from research.data import lm_corpus, store as store_lib
from research.data import vocab as vocab_lib
from research.errors import UserError
from research.models import language_model, transformer  # noqa: F401  (registers transformer_lm)
from research.parallel import to_host
from research.tasks.base import Task, register
from research.losses import smoothed_cross_entropy

TOKENIZERS = store_lib.TOKENIZERS
SPLITS = lm_corpus.SPLITS


@register('language_model')
class LanguageModelTask(Task):
  evaluators = ('language_modeling',)

  @classmethod
  def validate(cls, config):
    super().validate(config)
    V = validation
    V.check(config, [
        ('data.tokenizer', V.one_of(*TOKENIZERS)), ('data.context', V.integer(2)),
        ('data.eval_stride', V.integer(0)), ('data.vocab_size', V.integer(2)),
        ('data.train_size', V.integer(1)), ('eval.validation_tokens', V.integer(0)),
        ('eval.test_tokens', V.integer(0)), ('eval.sample_tokens', V.integer(0)),
        ('eval.temperature', V.number(0.0)), ('eval.top_k', V.integer(0)),
        ('eval.top_p', V.number(0.0, 1.0, open_low=True)),
        ('model.num_layers', V.integer(1)), ('model.model_dim', V.integer(1)),
        ('model.num_heads', V.integer(1)), ('model.ff_dim', V.integer(1)),
        ('model.attention_block', V.integer(0)),
        ('model.activation', V.one_of(*language_model.ACTIVATIONS)),
        ('model.attention_impl', V.one_of(*transformer.ATTENTION))])
    m = config.model
    V.require(m.model_dim % m.num_heads == 0, f'model.model_dim={m.model_dim} is not divisible '
              f'by model.num_heads={m.num_heads}; pick heads that divide it')
    d = config.data
    if config.init.from_hf and d.tokenizer != 'huggingface':
      raise UserError(f'init.from_hf starts from a checkpoint that brings its own tokenizer; '
                      f'set --config.data.tokenizer=huggingface (not {d.tokenizer!r})')
    if d.name == 'random' and d.tokenizer == 'huggingface':
      raise UserError('data.name=random draws char or byte ids; a Hugging Face tokenizer needs '
                      'a corpus (data.name=text)')
    lm_corpus.mixture(d)  # a bad weight: one error line before any work.
    if not 0 < d.eval_stride <= d.context and d.eval_stride != 0:
      raise UserError(f'data.eval_stride={d.eval_stride} must be in 1..data.context='
                      f'{d.context} (0: non-overlapping windows)')

  def __init__(self, config, runtime, workdir: str = ''):
    super().__init__(config, runtime, workdir)
    d = config.data
    self.context = d.context
    self.stride = d.eval_stride or d.context
    self._corpus = None
    folder = os.path.join(workdir, 'tokenizer') if workdir else ''
    saved = folder and os.path.isfile(os.path.join(folder, 'vocab.json'))
    # A Hugging Face tokenizer is read as it is (the run's own copy once it has one);
    # the others come with the data.
    self._given_tokenizer = tokenizer_folder(config)
    if saved:
      self.vocab = vocab_lib.load(folder)  # the run's own: predict reads nothing else.
      self._given_tokenizer = folder if d.tokenizer == 'huggingface' else ''
    elif d.tokenizer == 'huggingface':
      if not self._given_tokenizer:
        raise UserError('data.tokenizer=huggingface reads a Hugging Face tokenizer folder: set '
                        'init.from_hf (a GPT-2 checkpoint folder) or data.tokenizer_path')
      if not os.path.isdir(self._given_tokenizer):
        raise UserError(f'{self._given_tokenizer}: no such folder (data.tokenizer_path or '
                        'init.from_hf)')
      self.vocab = vocab_lib.load(self._given_tokenizer)
    else:
      self.vocab = self.corpus.vocab
    if (d.tokenizer == 'huggingface') != isinstance(self.vocab, vocab_lib.HuggingFaceVocab):
      raise UserError(f'data.tokenizer={d.tokenizer!r}, but the tokenizer in '
                      f'{folder if saved else self._given_tokenizer} is '
                      f'{type(self.vocab).__name__}: use the run\'s own data.tokenizer, or a '
                      'new workdir')
    if folder and not saved and jax.process_index() == 0:
      vocab_lib.save(self.vocab, folder)
    self.model = models.get(config.model.name, 'language_model').from_config(
        config.model, len(self.vocab), self.context)
    self._scores = runtime.jit_data_parallel(
        lambda params, w: self._window_scores(params, w['tokens'], w['first']))
    self._generate = {}

  @classmethod
  def prepare(cls, config) -> list:
    if config.data.name == 'random':
      return []
    return [s.path for s in lm_corpus.prepare(config.data, tokenizer_folder(config))]

  # --- data -------------------------------------------------------------------------

  @property
  def corpus(self) -> lm_corpus.Corpus:
    """The token stores, opened (and prepared, where none is yet) on first use."""
    if self._corpus is None:
      corpus = lm_corpus.load(self.config.data, self.context, self._given_tokenizer)
      mine = getattr(self, 'vocab', None)
      if mine is not None and vocab_lib.fingerprint(mine) != vocab_lib.fingerprint(corpus.vocab):
        raise UserError(f'the data\'s tokenizer ({corpus.stores[0].path if corpus.stores else "random"}) '
                        f'differs from the one this run trained with ({self.workdir}/tokenizer): '
                        'the corpus or data.tokenizer changed; use the run\'s data, or a new '
                        'workdir')
      self._corpus = corpus
    return self._corpus

  def train_batch(self, step: int):
    """Rows of data.context + 1 tokens from random offsets of the training split."""
    return {'tokens': self.corpus.batch(self.config.seed, step, self.config.train.batch_size,
                                        self.context + 1)}

  def units(self, batch):
    return {'examples': len(batch['tokens']), 'tokens': batch['tokens'][:, 1:].size}

  # --- the model -----------------------------------------------------------------------

  def init(self, rng):
    return self.model.init(rng)

  def pretrained_params(self):
    """init.from_hf's GPT-2 checkpoint as this model's parameters, else None."""
    if not self.config.init.from_hf:
      return None
    abstract = nn.meta.unbox(jax.eval_shape(self.init, jax.random.PRNGKey(0)))
    params = huggingface.read_gpt2(self.config.init.from_hf, abstract, self.config.model,
                                   self.model.module.sizes.embed_scale)
    logging.info('starting from the GPT-2 checkpoint %s', self.config.init.from_hf)
    return params

  def loss(self, params, batch, rng):
    tokens = batch['tokens']
    logits = self.model.forward(params, tokens[:, :-1], rng=rng, train=True)
    nll, margin = smoothed_cross_entropy(logits, tokens[:, 1:], 0.0)
    correct = (margin >= 0).astype(jnp.float32)
    return nll.sum(), jnp.asarray(nll.size, jnp.float32), {'token_accuracy': correct.sum()}

  # --- evaluation ----------------------------------------------------------------------

  def windows(self, n: int):
    """(starts [W], first scored position [W]) of windows of context + 1 tokens over
    a split of n tokens: every target (tokens 1..n-1) scored by exactly one window."""
    c, s = self.context, self.stride
    starts = list(range(0, n - 1 - c + 1, s))
    if starts[-1] + c < n - 1:
      starts.append(n - 1 - c)
    first, covered = [], 0  # covered: the last target index scored so far.
    for start in starts:
      first.append(max(0, covered - start))
      covered = start + c
    return np.array(starts), np.array(first)

  def _window_scores(self, params, tokens, first):
    """Summed log-loss (nats) and count of the scored targets of each window."""
    logits = self.model.forward(params, tokens[:, :-1])
    nll, _ = smoothed_cross_entropy(logits, tokens[:, 1:], 0.0)
    scored = jnp.arange(self.context)[None, :] >= first[:, None]
    return jnp.stack([(nll * scored).sum(1), scored.sum(1).astype(jnp.float32)], 1)

  def log_loss(self, params, split: str, max_tokens: int = 0):
    """(summed log-loss in nats, targets scored, characters they cover), streaming
    the split's windows from the store a batch at a time."""
    data = self.corpus.splits[split]
    n = min(len(data), max_tokens + 1) if max_tokens else len(data)
    starts, first = self.windows(n)
    bs = self.config.eval.batch_size
    total = np.zeros(2)
    for i in range(0, len(starts), bs):
      s = starts[i:i + bs]
      block = data.read(int(s[0]), int(s[-1]) + self.context + 1).astype(np.int32)
      windows = block[(s - s[0])[:, None] + np.arange(self.context + 1)]
      batch = {'tokens': windows, 'first': first[i:i + bs].astype(np.int32)}
      total += self.runtime.run_batched(self._scores, params, batch).sum(0)
    # The characters the targets cover.
    chars = self.corpus.characters[split] * total[1] / len(data)
    return total[0], total[1], chars

  # --- export ------------------------------------------------------------------------

  def export(self, params, out_dir: str) -> list:
    """A GPT-2 checkpoint that transformers loads (research/huggingface.py), a
    transformers tokenizer where one holds the run's ids, and the run's tokenizer in
    out_dir/seqlab_tokenizer/ (docs/language_model.md)."""
    m = self.config.model
    config = huggingface.gpt2_config(len(self.vocab), self.context, m.model_dim, m.num_layers,
                                     m.num_heads, m.ff_dim, self.vocab.eos_id, m.norm_epsilon,
                                     self.model.module.sizes.activation)
    tensors = huggingface.gpt2_tensors(params, m.num_layers, self.model.module.sizes.embed_scale)
    paths = huggingface.write(out_dir, config, tensors)
    folder = os.path.join(out_dir, 'seqlab_tokenizer')
    vocab_lib.save(self.vocab, folder)
    return paths + huggingface.write_lm_tokenizer(out_dir, self.vocab) + [folder]

  # --- sampling ------------------------------------------------------------------------

  def continue_prompts(self, params, prompts, rng=None):
    """Each prompt's continuation, eval.sample_tokens long, sampled with
    eval.temperature, eval.top_k and eval.top_p. A prompt longer than the context
    keeps its last data.context tokens, with a warning; an empty one starts a
    document (after </s>)."""
    e = self.config.eval
    new = e.sample_tokens
    ids, lengths, cut, unknown = [], [], 0, 0
    for text in prompts:
      seq = self.vocab.encode_array(text).astype(np.int32)
      unknown += self.vocab.unknown_count(text)
      if len(seq) > self.context:
        cut += 1
        seq = seq[-self.context:]
      if not len(seq):
        seq = np.array([self.vocab.eos_id], np.int32)
      ids.append(seq)
      lengths.append(len(seq))
    if unknown:
      logging.warning('%d prompt character(s) or word(s) outside the vocabulary were read as '
                      '%r', unknown, getattr(self.vocab, 'fallback', '') or '<unk>')
    if cut:
      logging.warning('%d prompt(s) longer than data.context=%d tokens kept their last %d',
                      cut, self.context, self.context)
    prompt = np.zeros((len(ids), self.context), np.int32)
    for row, seq in enumerate(ids):
      prompt[row, :len(seq)] = seq
    key = (new, e.temperature, e.top_k, e.top_p)
    if key not in self._generate:
      self._generate[key] = jax.jit(lambda p, x, n, r: self.model.generate(
          p, x, n, r, num_tokens=new, temperature=e.temperature, top_k=e.top_k, top_p=e.top_p,
          never=self.vocab.never_emitted()))
    rng = jax.random.PRNGKey(self.config.seed) if rng is None else rng
    host = to_host(params)  # every process samples with the whole model.
    out = np.asarray(self._generate[key](host, prompt, np.array(lengths, np.int32), rng))
    return [self.vocab.decode(row) for row in out]

  def predict(self, params, lines):
    """Each line of stdin continued: one output line per input line."""
    return self.continue_prompts(params, lines)

  def samples(self, params, split: str, n: int):
    """Continuations of the openings of n windows of a split, beside the true text."""
    if not n:
      return []
    data, length = self.corpus.splits[split], min(32, self.context // 2)
    starts = np.linspace(0, len(data) - 2 * length - 1, n).astype(int)
    prompts = [self.vocab.decode(data.read(s, s + length)) for s in starts]
    truth = [self.vocab.decode(data.read(s + length, s + 2 * length)) for s in starts]
    outs = self.continue_prompts(params, prompts)
    return [(p, o[:length], t) for p, o, t in zip(prompts, outs, truth)]

  def final_results(self, params):
    return {'vocab_size': len(self.vocab), 'context': self.context}


def tokenizer_folder(config) -> str:
  """data.tokenizer=huggingface's folder: data.tokenizer_path, else init.from_hf's."""
  if config.data.tokenizer != 'huggingface':
    return ''
  return config.data.tokenizer_path or config.init.from_hf
