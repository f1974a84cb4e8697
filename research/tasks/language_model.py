"""Language modelling: a decoder-only Transformer on a text corpus.

Data: data.name 'text' reads a plain-text corpus (data.path: a .txt / .gz file,
a directory of them or a glob; by default $SEQLAB_DATA/wiki2019_text8like/
text8like.gz), 'text8' the text8 TFDS builder, 'random' uniform tokens for
throughput. The text is split as text8 is: the first 90% of its characters
train, the next 5% validate, the last 5% test (for text8's 10^8 characters,
90M / 5M / 5M).

Tokens (data.tokenizer): 'char' (the corpus's own characters, 27 for text8:
a-z and space), 'byte', 'word' (the data.vocab_size most frequent) or
'sentencepiece' (trained on the start of the training split).

Batches are data.context + 1 tokens from random offsets of the training split,
a pure function of (seed, step). Evaluation scores every token of a split once
(the first data.context predict from what precedes them in their window): in
non-overlapping windows, or with data.eval_stride < context, in sliding windows
of which each scores only its last eval_stride tokens. Metrics: bits per
character (bpc, from the summed log-loss over the split's characters, for any
tokenizer) and perplexity per token. eval.validation_tokens and
eval.test_tokens bound the tokens scored from each split's start (0: all).
"""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

import research.data as data_lib
from research import models, validation
from research.data import corpus as corpus_lib, pipeline, text8, text_files
from research.data.vocab import SentencePieceVocab, WordVocab
from research.errors import UserError
from research.models import language_model, transformer  # noqa: F401  (registers transformer_lm)
from research.parallel import to_host
from research.tasks import Task, register
from research.tasks.translation import smoothed_cross_entropy

TEXT8LIKE = os.path.join('wiki2019_text8like', 'text8like.gz')
TOKENIZERS = ('char', 'byte', 'word', 'sentencepiece')
SPLITS = ('train', 'validation', 'test')


def read_text(path: str, errors: str = 'strict') -> str:
  """The text of a file, a directory's .txt / .gz files or a glob, joined by newlines."""
  parts = []
  for name in corpus_lib.files(path):
    parts.append(text_files.decode(text_files.read_bytes(name), name, errors))
  return '\n'.join(parts)


class CharTokens:
  """The corpus's own characters, in code-point order; nothing reserved."""

  def __init__(self, chars):
    self.chars = list(chars)
    self.index = {c: i for i, c in enumerate(self.chars)}
    # Characters outside the alphabet become a space where the corpus has one.
    self.fallback = self.index.get(' ', 0)

  def __len__(self):
    return len(self.chars)

  def encode(self, text: str):
    ids = [self.index.get(c, -1) for c in text]
    unknown = sum(i < 0 for i in ids)
    return np.array([self.fallback if i < 0 else i for i in ids], np.int32), unknown

  def decode(self, ids) -> str:
    return ''.join(self.chars[int(i)] for i in ids)

  def never_emitted(self):
    return ()


class ByteTokens:
  """UTF-8 bytes: 256 ids, every input known."""

  def __len__(self):
    return 256

  def encode(self, text: str):
    return np.frombuffer(text.encode('utf-8'), np.uint8).astype(np.int32), 0

  def decode(self, ids) -> str:
    return bytes(int(i) for i in ids).decode('utf-8', errors='replace')

  def never_emitted(self):
    return ()


class VocabTokens:
  """research.data.vocab's word or SentencePiece vocabularies (<unk> for the unknown)."""

  def __init__(self, vocab, unknown_id: int | None):
    self.vocab, self.unknown_id = vocab, unknown_id

  def __len__(self):
    return len(self.vocab)

  def encode(self, text: str):
    ids = np.array(self.vocab.encode(text), np.int32)
    return ids, int((ids == self.unknown_id).sum()) if self.unknown_id is not None else 0

  def decode(self, ids) -> str:
    return self.vocab.decode(list(ids) + [2])  # stop at </s> only where the ids end.

  def never_emitted(self):
    return self.vocab.never_emitted()


@register('language_model')
class LanguageModelTask(Task):

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
        ('model.attention_impl', V.one_of(*transformer.ATTENTION))])
    m = config.model
    V.require(m.model_dim % m.num_heads == 0, f'model.model_dim={m.model_dim} is not divisible '
              f'by model.num_heads={m.num_heads}; pick heads that divide it')
    d = config.data
    if not 0 < d.eval_stride <= d.context and d.eval_stride != 0:
      raise UserError(f'data.eval_stride={d.eval_stride} must be in 1..data.context='
                      f'{d.context} (0: non-overlapping windows)')

  def __init__(self, config, runtime, workdir: str = ''):
    super().__init__(config, runtime, workdir)
    d = config.data
    self.context = d.context
    self.stride = d.eval_stride or d.context
    self.tokens, self.chars = self._load(d)
    for split in SPLITS:
      if len(self.tokens[split]) < self.context + 1:
        raise UserError(f'the {split} split holds {len(self.tokens[split])} tokens, fewer '
                        f'than one window of data.context + 1 = {self.context + 1}; use a '
                        'longer corpus or a shorter data.context')
    logging.info('language model data: %s tokens (vocabulary %d): %s',
                 d.tokenizer, len(self.vocab),
                 ', '.join(f'{s} {len(self.tokens[s]):,}' for s in SPLITS))
    self.model = models.get(config.model.name, 'language_model').from_config(
        config.model, len(self.vocab), self.context)
    self._scores = runtime.jit_data_parallel(
        lambda params, w: self._window_scores(params, w['tokens'], w['first']))
    self._generate = {}

  # --- data -------------------------------------------------------------------------

  def _load(self, d):
    """({split: token ids}, {split: characters}), with self.vocab set."""
    if d.name == 'random':  # throughput: uniform tokens, no file.
      self.vocab = ByteTokens() if d.tokenizer == 'byte' else CharTokens(
          [chr(ord('a') + i) for i in range(d.vocab_size)])
      rng = np.random.default_rng(d.seed)
      n = {'train': d.train_size, 'validation': 4 * (d.context + 1), 'test': 4 * (d.context + 1)}
      tokens = {s: rng.integers(0, len(self.vocab), n[s]).astype(np.int32) for s in SPLITS}
      return tokens, {s: n[s] for s in SPLITS}
    if d.name == 'text8':
      text = ' '.join(text8.load_lines(d.path, d.get('data_dir', '')))
    elif d.name == 'text':
      path = data_lib.local_path(d.path, TEXT8LIKE)
      if not path:
        raise UserError('data.path: give the corpus (a .txt / .gz file, a directory or a '
                        f'glob), set {data_lib.DATA_ENV} to a folder holding {TEXT8LIKE}, '
                        'or download text8 with --config.data.name=text8')
      text = read_text(path, d.encoding_errors)
    else:
      raise UserError(f'unknown data.name {d.name!r} for the language model; use text, text8 '
                      'or random')
    n = len(text)
    cut1, cut2 = int(n * 0.9), int(n * 0.95)
    parts = {'train': text[:cut1], 'validation': text[cut1:cut2], 'test': text[cut2:]}
    self.vocab = self._make_vocab(d, parts['train'])
    tokens = {}
    for split, part in parts.items():
      tokens[split], unknown = self.vocab.encode(part)
      if unknown:
        logging.warning('%s: %d character(s) or word(s) outside the vocabulary', split, unknown)
    return tokens, {s: len(p) for s, p in parts.items()}

  def _make_vocab(self, d, train_text: str):
    if d.tokenizer == 'char':
      return CharTokens(sorted(set(train_text)))
    if d.tokenizer == 'byte':
      return ByteTokens()
    if d.tokenizer == 'word':
      return VocabTokens(WordVocab.from_texts([train_text], max_size=d.vocab_size), 3)
    # SentencePiece learns from the training split's first 10M characters, in lines.
    sample = train_text[:10_000_000]
    lines = [sample[i:i + 4096] for i in range(0, len(sample), 4096)]
    cache = os.path.join(self.workdir or '.', 'tokenizer')
    return VocabTokens(SentencePieceVocab.train(lines, d.vocab_size, 'bpe', cache), None)

  def train_batch(self, step: int):
    """Rows of data.context + 1 tokens from random offsets of the training split."""
    train, bs = self.tokens['train'], self.config.train.batch_size
    starts = np.random.default_rng([self.config.seed, step]).integers(
        0, len(train) - self.context, bs)[pipeline.process_slice(bs)]
    return {'tokens': train[starts[:, None] + np.arange(self.context + 1)].astype(np.int32)}

  def units(self, batch):
    return {'examples': len(batch['tokens']), 'tokens': batch['tokens'][:, 1:].size}

  # --- the model -----------------------------------------------------------------------

  def init(self, rng):
    return self.model.init(rng)

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
    """(summed log-loss in nats, targets scored, characters they cover)."""
    data = self.tokens[split]
    n = min(len(data), max_tokens + 1) if max_tokens else len(data)
    starts, first = self.windows(n)
    bs = self.config.eval.batch_size
    total = np.zeros(2)
    for i in range(0, len(starts), bs):
      s = starts[i:i + bs]
      windows = data[s[:, None] + np.arange(self.context + 1)].astype(np.int32)
      batch = {'tokens': windows, 'first': first[i:i + bs].astype(np.int32)}
      total += self.runtime.run_batched(self._scores, params, batch).sum(0)
    chars = self.chars[split] * total[1] / len(data)  # the characters the targets cover.
    return total[0], total[1], chars

  def evaluate(self, params, split: str):
    e = self.config.eval
    limit = e.validation_tokens if split == 'validation' else e.get('test_tokens', 0)
    nats, count, chars = self.log_loss(params, split, limit)
    return {'bpc': float(nats / chars / math.log(2)), 'perplexity': float(math.exp(nats / count)),
            'nll_per_token': float(nats / count), 'tokens': int(count)}

  # --- sampling ------------------------------------------------------------------------

  def continue_prompts(self, params, prompts, rng=None):
    """Each prompt's continuation, eval.sample_tokens long, sampled with
    eval.temperature, eval.top_k and eval.top_p. A prompt longer than the context
    keeps its last data.context tokens, with a warning."""
    e = self.config.eval
    new = e.sample_tokens
    ids, lengths, cut, unknown = [], [], 0, 0
    for text in prompts:
      seq, bad = self.vocab.encode(text)
      unknown += bad
      if len(seq) > self.context:
        cut += 1
        seq = seq[-self.context:]
      if not len(seq):
        seq = np.array([getattr(self.vocab, 'fallback', 0)], np.int32)
      ids.append(seq)
      lengths.append(len(seq))
    if unknown:
      logging.warning('%d prompt character(s) outside the vocabulary were mapped to %r',
                      unknown, self.vocab.decode([getattr(self.vocab, 'fallback', 0)])
                      if isinstance(self.vocab, CharTokens) else '<unk>')
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
    data, length = self.tokens[split], min(32, self.context // 2)
    starts = np.linspace(0, len(data) - 2 * length - 1, n).astype(int)
    prompts = [self.vocab.decode(data[s:s + length]) for s in starts]
    truth = [self.vocab.decode(data[s + length:s + 2 * length]) for s in starts]
    outs = self.continue_prompts(params, prompts)
    return [(p, o[:length], t) for p, o, t in zip(prompts, outs, truth)]

  def final_results(self, params):
    return {'vocab_size': len(self.vocab), 'context': self.context}
