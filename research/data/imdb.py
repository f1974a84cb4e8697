"""IMDB movie reviews (Maas et al. 2011): 25k train, 25k test, 50k unlabeled.

Three sources, one result (`Reviews` per split: ids, texts, labels):
- a local directory in this project's TSV layout: train.tsv.gz / test.tsv.gz
  (`id, sentiment, rating, review`) and unsup.tsv.gz (`id, review`);
- a local directory in Kaggle's layout ("Bag of Words Meets Bags of Popcorn"):
  labeledTrainData.tsv (`id, sentiment, review`), testData.tsv (`id, review`,
  labels hidden: they are recovered from the id's star rating, `<n>_<rating>`,
  as aclImdb defines them: >= 7 positive, <= 4 negative) and
  unlabeledTrainData.tsv;
- online, the `ImdbReviews` TFDS builder (imdb_tfds.py, imported only then):
  aclImdb_v1.tar.gz from Stanford, the archive TFDS's imdb_reviews downloads,
  prepared once as array_record and read without TensorFlow.

`tokenize` is the one text cleaner for every method here and for the word2vec
corpus built from reviews: HTML tags out, lowercase, words (with inner
apostrophes: "don't" stays one token), digits, and "!" / "?" kept as tokens.
"""
import dataclasses
import os
import re

import numpy as np
from absl import logging

from research.data import local_path, text_files
from research.errors import UserError

SPLITS = ('train', 'test', 'unsup')
LAYOUTS = {
    'tsv': {'train': 'train.tsv.gz', 'test': 'test.tsv.gz', 'unsup': 'unsup.tsv.gz'},
    'kaggle': {'train': 'labeledTrainData.tsv', 'test': 'testData.tsv',
               'unsup': 'unlabeledTrainData.tsv'},
}
_TAG = re.compile(r'<[^>]{0,100}>')
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[!?]")


@dataclasses.dataclass
class Reviews:
  ids: list[str]
  texts: list[str]
  labels: np.ndarray      # [N] int32: 1 positive, 0 negative, -1 unlabeled.
  skipped_empty: int = 0  # reviews with no tokens, counted and left out.


def tokenize(text: str) -> list[str]:
  return _TOKEN.findall(_TAG.sub(' ', text).lower())


def load(path: str, splits=SPLITS, errors: str = 'strict', data_dir: str = '') -> dict:
  """{split: Reviews}. path: a local directory (either layout; by default
  $SEQLAB_DATA/imdb), or '' to use the TFDS builder (downloads once into data_dir)."""
  if errors not in ('strict', 'replace'):
    raise UserError(f'data.encoding_errors must be strict or replace, not {errors!r}')
  path = local_path(path, 'imdb')
  if not path:
    from research.data import imdb_tfds  # pylint: disable=g-import-not-at-top  (TFDS: only here)
    return {s: _from_records(imdb_tfds.records(s, data_dir)) for s in splits}
  if not os.path.isdir(path):
    raise UserError(f'imdb: {path!r} is not a directory')
  for layout, names in LAYOUTS.items():
    if all(os.path.isfile(os.path.join(path, names[s])) for s in splits):
      out = {s: _read_tsv(os.path.join(path, names[s]), layout, errors) for s in splits}
      for s, r in out.items():
        logging.info('imdb %s: %d reviews from %s (%s layout)%s', s, len(r.ids), path, layout,
                     f', {r.skipped_empty} empty skipped' if r.skipped_empty else '')
      return out
  wanted = ' or '.join(', '.join(LAYOUTS[l][s] for s in splits) for l in LAYOUTS)
  raise UserError(f'imdb: {path} holds neither layout; expected {wanted}')


def _read_tsv(path: str, layout: str, errors: str) -> Reviews:
  text = text_files.decode(text_files.read_bytes(path), path, errors)
  lines = text.split('\n')
  header = lines[0].rstrip('\r').split('\t')
  if header[0] != 'id' or header[-1] != 'review':
    raise UserError(f'{path}: the header must start with id and end with review, not {header}')
  labeled = 'sentiment' in header
  ids, texts, labels, empty = [], [], [], 0
  for number, line in enumerate(lines[1:], start=2):
    line = line.rstrip('\r')
    if not line:
      continue
    fields = line.split('\t')
    if len(fields) != len(header):
      raise UserError(f'{path}, line {number}: {len(fields)} tab-separated fields, '
                      f'expected {len(header)} ({", ".join(header)})')
    review = fields[-1]
    if layout == 'kaggle':  # quoted, with backslash-escaped quotes inside.
      if len(review) >= 2 and review[0] == review[-1] == '"':
        review = review[1:-1]
      review = review.replace('\\"', '"').replace("\\'", "'")
      fields[0] = fields[0].strip('"')
    if labeled:
      label = _label(fields[header.index('sentiment')], path, number)
    else:
      label = _label_from_id(fields[0]) if os.path.basename(path) == 'testData.tsv' else -1
    if not tokenize(review):
      empty += 1
      continue
    ids.append(fields[0])
    texts.append(review)
    labels.append(label)
  if not ids:
    raise UserError(f'{path}: no reviews')
  return Reviews(ids, texts, np.asarray(labels, np.int32), empty)


def _label(value: str, path: str, number: int) -> int:
  if value not in ('0', '1'):
    raise UserError(f'{path}, line {number}: unknown sentiment label {value!r} (expected 0 or 1)')
  return int(value)


def _label_from_id(review_id: str) -> int:
  """Kaggle's test ids are aclImdb file names, <n>_<rating>; ratings 7-10 are positive."""
  try:
    rating = int(review_id.rsplit('_', 1)[1])
  except (IndexError, ValueError):
    return -1
  return 1 if rating >= 7 else 0 if 1 <= rating <= 4 else -1


def _from_records(records) -> Reviews:
  """Reviews of the TFDS builder's records (dicts of id, text, label), in a fixed
  order; reviews with no tokens are counted and left out."""
  ids, texts, labels, empty = [], [], [], 0
  for r in sorted(records, key=lambda r: (-int(r['label']), r['id'])):
    text = r['text'].decode('utf-8')
    if not tokenize(text):
      empty += 1
      continue
    ids.append(r['id'].decode('utf-8'))
    texts.append(text)
    labels.append(int(r['label']))
  return Reviews(ids, texts, np.asarray(labels, np.int32), empty)
