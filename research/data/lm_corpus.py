"""Language-model corpora: prepared token stores, split as text8 is and mixed by weight.

data.name 'text' reads data.path (a .txt / .gz / .jsonl file, a directory of
them or a glob; by default $SEQLAB_DATA/wiki2019_text8like/text8like.gz), or
with data.mixture several corpora ('PATH:WEIGHT,PATH:WEIGHT', as levanter's and
MaxText's mixtures), each its own store; 'text8' the text8 file (local, or
downloaded once); 'random' uniform tokens held in memory, for throughput.

Each store is one stream of tokens, documents ended by </s>. Its first 90%
trains, the next 5% validates, the last 5% tests (text8's 90M / 5M / 5M). In a
mixture, the tokenizer is learned from the first corpus and encodes the others;
a training row comes from corpus i with probability weight_i / sum(weights);
validation and test are the first corpus's.
"""
import dataclasses
import os

import numpy as np
from absl import logging

import research.data as data_lib
from research.data import pipeline, store as store_lib, text8
from research.data import vocab as vocab_lib
from research.errors import UserError

SPLITS = ('train', 'validation', 'test')


@dataclasses.dataclass
class Corpus:
  """vocab; splits: {split: tokens (TokenFile or Tokens)} of the first corpus;
  characters: {split: characters its tokens cover}; train: every corpus's
  training tokens, drawn from by `weights`."""
  vocab: vocab_lib.Vocab
  splits: dict
  characters: dict
  train: list
  weights: np.ndarray
  stores: list

  def batch(self, seed: int, step: int, batch_size: int, length: int) -> np.ndarray:
    """This process's rows of global batch `step`: `length` tokens from random
    offsets of the training tokens, a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    rows = pipeline.process_slice(batch_size)
    if len(self.train) == 1:
      starts = rng.integers(0, len(self.train[0]) - length + 1, batch_size)[rows]
      return self.train[0].windows(starts, length)
    which = rng.choice(len(self.train), batch_size, p=self.weights)
    highs = np.array([len(t) - length + 1 for t in self.train])[which]
    starts = rng.integers(0, highs)
    out = np.empty((batch_size, length), np.int32)[rows]
    for i, (w, s) in enumerate(zip(which[rows], starts[rows])):
      out[i] = self.train[w].windows([s], length)[0]
    return out


def mixture(d) -> list[tuple[str, float]]:
  """[(path, weight)] of data.mixture ('PATH:WEIGHT,...'), or [(data.path, 1)]."""
  if not d.mixture:
    return [(d.path, 1.0)]
  out = []
  for part in filter(None, (p.strip() for p in d.mixture.split(','))):
    path, sep, weight = part.rpartition(':')
    try:
      value = float(weight) if sep else float('nan')
    except ValueError:
      value = float('nan')
    if not path or not value > 0:
      raise UserError(f'data.mixture entry {part!r}: expected PATH:WEIGHT with a weight > 0, '
                      'e.g. data.mixture=web.jsonl:0.7,books.txt:0.3')
    out.append((path, value))
  return out


def source_paths(d) -> list[tuple[str, float]]:
  """[(the local source of each corpus, its weight)], each checked to exist."""
  if d.name == 'text8':
    return [(text8.source_file(d.path, d.data_dir), 1.0)]
  out = []
  for path, weight in mixture(d):
    found = data_lib.local_path(path, data_lib.TEXT8LIKE)
    if not found:
      raise UserError('data.path: give the corpus (a .txt / .gz / .jsonl file, a directory or '
                      f'a glob), set {data_lib.DATA_ENV} to a folder holding {data_lib.TEXT8LIKE}, or '
                      'download text8 with --config.data.name=text8')
    store_lib.Spec(found).files()  # a missing corpus: one error line naming it.
    out.append((found, weight))
  return out


def specs(d, tokenizer: str = '') -> list[tuple[store_lib.Spec, float]]:
  """Each corpus's store spec with its weight; `tokenizer` is the folder of a given
  tokenizer (data.tokenizer=huggingface) that every corpus encodes with."""
  out = []
  for path, weight in source_paths(d):
    out.append((store_lib.Spec(path, d.tokenizer, d.vocab_size,
                               d.text_field, d.encoding_errors, tokenizer), weight))
  return out


def prepare(d, tokenizer: str = '', progress: bool = True) -> list[store_lib.Store]:
  """Every store the config names, prepared where none is yet (`tokenizer`: as
  specs')."""
  root = store_lib.root(d.store_dir)
  stores = []
  for i, (spec, _) in enumerate(specs(d, tokenizer)):
    if i:  # the later corpora encode with the first one's tokenizer.
      spec = dataclasses.replace(spec, base=os.path.join(stores[0].path, 'tokenizer'))
    stores.append(store_lib.open_or_prepare(spec, root, progress))
  return stores


def load(d, context: int, tokenizer: str = '') -> Corpus:
  """The corpus of data.* (prepared first where needed), split and checked
  (`tokenizer`: as specs')."""
  if d.name == 'random':
    return _random(d, context)
  if d.name not in ('text', 'text8'):
    raise UserError(f'unknown data.name {d.name!r} for the language model; use text, text8 '
                    'or random')
  stores = prepare(d, tokenizer)
  first = stores[0]
  n = len(first)
  cuts = {'train': (0, int(n * 0.9)), 'validation': (int(n * 0.9), int(n * 0.95)),
          'test': (int(n * 0.95), n)}
  splits = {s: first.tokens.part(*cuts[s]) for s in SPLITS}
  characters = {s: first.characters(*cuts[s]) for s in SPLITS}
  train = [splits['train']] + [s.tokens.part(0, int(len(s) * 0.9)) for s in stores[1:]]
  weights = np.array([w for _, w in specs(d)] if len(stores) > 1 else [1.0])
  for split, tokens in splits.items():
    if len(tokens) < context + 1:
      raise UserError(f'the {split} split holds {len(tokens)} tokens, fewer than one window '
                      f'of data.context + 1 = {context + 1}; use a longer corpus or a shorter '
                      'data.context')
  for s, tokens in zip(stores[1:], train[1:]):
    if len(tokens) < context + 1:
      raise UserError(f'{s.meta["spec"]["path"]}: its training part holds {len(tokens)} '
                      f'tokens, fewer than one window of {context + 1}')
  logging.info('language model data: %s tokens (vocabulary %d) from %s: %s', d.tokenizer,
               len(first.vocab), ', '.join(s.path for s in stores),
               ', '.join(f'{s} {len(splits[s]):,}' for s in SPLITS))
  return Corpus(first.vocab, splits, characters, train, weights / weights.sum(), stores)


def _random(d, context: int) -> Corpus:
  """Uniform tokens over a vocabulary of data.vocab_size ids: throughput only."""
  letters = [chr(ord('a') + i) for i in range(max(d.vocab_size - len(vocab_lib.SPECIALS), 1))]
  vocab = (vocab_lib.ByteVocab() if d.tokenizer == 'byte'
           else vocab_lib.CharVocab(letters, fallback='a'))
  rng = np.random.default_rng(d.seed)
  n = {'train': d.train_size, 'validation': 4 * (context + 1), 'test': 4 * (context + 1)}
  splits = {s: store_lib.Tokens(rng.integers(0, len(vocab), n[s]).astype(np.int32))
            for s in SPLITS}
  return Corpus(vocab, splits, {s: float(n[s]) for s in SPLITS}, [splits['train']],
                np.ones(1), [])
