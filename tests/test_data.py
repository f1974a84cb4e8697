import datetime
import threading

import numpy as np
import pytest

from research.data import dates, pipeline
from research.data.vocab import EOS, PAD, UNK, CharVocab


def test_dates_are_deterministic_and_splits_are_disjoint():
  a = dates.load(seed=3, train_size=300, validation_size=50, test_size=50)
  b = dates.load(seed=3, train_size=300, validation_size=50, test_size=50)
  assert a['train'].sources == b['train'].sources and a['test'].targets == b['test'].targets
  c = dates.load(seed=4, train_size=300, validation_size=50, test_size=50)
  assert a['train'].sources != c['train'].sources
  train, val, test = dates.split_days(3)
  assert not set(train) & set(test) and not set(train) & set(val) and not set(val) & set(test)
  assert len(train) + len(val) + len(test) == (dates.LAST_DAY - dates.FIRST_DAY).days + 1
  assert not set(a['test'].targets) & set(dates.iso_date(datetime.date.fromordinal(int(d)))
                                          for d in train)


@pytest.mark.parametrize('fmt', range(len(dates.FORMATS)))
def test_every_format_names_the_same_day(fmt):
  day = datetime.date(2015, 3, 3)
  text = dates.human_date(day, fmt, case=0)
  assert any(p in text for p in ('2015', '15', 'mar', '3'))
  assert dates.iso_date(day) == '2015-03-03'
  # Unambiguous conventions: slashes are month-first, dots day-first.
  assert dates.human_date(datetime.date(2001, 2, 9), 1, 0) == '2/9/01'
  assert dates.human_date(datetime.date(2001, 2, 9), 6, 0) == '09.02.2001'
  assert dates.human_date(datetime.date(1999, 3, 23), 2, 2) == 'MARCH 23RD, 1999'


def test_char_vocab_round_trip_unknowns_and_truncation():
  vocab = CharVocab.from_texts(['abc', 'cab'])
  ids, truncated = vocab.encode_batch(['ab', 'abz', 'abcabc'], max_len=4, add_eos=True)
  assert truncated == 1
  assert ids[0].tolist() == vocab.encode('ab') + [EOS, PAD]
  assert ids[1, 2] == UNK
  assert ids[2, -1] == EOS
  assert vocab.decode(ids[0]) == 'ab'
  assert vocab.decode(ids[1]) == 'ab?'


def test_batch_order_is_a_pure_function_of_seed_and_step():
  n, bs = 10, 4
  first = [pipeline.batch_indices(n, bs, seed=1, step=s) for s in range(5)]
  again = [pipeline.batch_indices(n, bs, seed=1, step=s) for s in reversed(range(5))][::-1]
  for x, y in zip(first, again):
    np.testing.assert_array_equal(x, y)
  stream = np.concatenate(first)
  # Each epoch (10 consecutive positions) is a permutation of the data.
  assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
  assert not np.array_equal(stream[:10], stream[10:20])
  assert not np.array_equal(pipeline.batch_indices(n, bs, 2, 0), first[0])


def test_epoch_ahead_starts_the_next_epoch_at_the_half_and_not_past_the_end():
  calls, started, release = [], threading.Event(), threading.Event()

  def fn(epoch):
    calls.append(epoch)
    if epoch == 1:
      started.set()
      release.wait(5)  # still running while epoch 0's steps are served.
    return epoch * 10

  ahead = pipeline.EpochAhead(fn, steps_per_epoch=4, total_steps=12)  # epochs 0, 1, 2.
  assert ahead.at(0) == (0, 0) and ahead.at(1) == (0, 1)
  assert calls == [0]  # nothing ahead before the half.
  assert ahead.at(2) == (0, 2)
  assert started.wait(5) and calls == [0, 1]  # epoch 1 began before anyone asked for it.
  release.set()
  assert ahead.at(5) == (10, 1)
  assert ahead.at(10) == (20, 2) and ahead.at(11) == (20, 3)
  assert calls == [0, 1, 2]  # epoch 3 is past the run: not started.
  assert ahead.at(13) == (30, 1) and calls == [0, 1, 2, 3]  # on demand.


def test_pieces_line_up_with_ids():
  vocab = CharVocab.from_texts(['2015-03-03'])
  ids = vocab.encode('2015-03')
  assert vocab.id_pieces(ids + [EOS, 5]) == list('2015-03') == vocab.pieces('2015-03')


def test_bucketed_batches_are_pure_group_similar_lengths_and_cover_each_epoch():
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 60, size=103)
  bs, per_epoch = 4, 103 // 4
  epoch0 = [pipeline.bucketed_batch_indices(lengths, bs, seed=5, step=s, chunk=5)
            for s in range(per_epoch)]
  again = pipeline.bucketed_batch_indices(lengths, bs, seed=5, step=3, chunk=5)
  np.testing.assert_array_equal(again, epoch0[3])
  flat = np.concatenate(epoch0)
  assert len(set(flat.tolist())) == len(flat) == per_epoch * bs  # no repeats in an epoch.
  spread = np.mean([np.ptp(lengths[b]) for b in epoch0])
  random_spread = np.mean([np.ptp(lengths[pipeline.batch_indices(103, bs, 5, s)])
                           for s in range(per_epoch)])
  assert spread < random_spread / 2
  next_epoch = pipeline.bucketed_batch_indices(lengths, bs, seed=5, step=per_epoch, chunk=5)
  assert not np.array_equal(next_epoch, epoch0[0])
  assert pipeline.bucket_length(17, (16, 24, 32)) == 24
  assert pipeline.bucket_length(99, (16, 24, 32)) == 32


def test_token_budget_batches_fill_the_budget_per_bucket_and_are_pure():
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 40, 2000)
  boundaries = (8, 16, 24, 40)
  widths = tuple(pipeline.bucket_length(int(n), boundaries) for n in lengths)
  budget, multiple = 1000, 4
  per_epoch = len(pipeline._token_budget_epoch(0, 0, widths, budget, multiple))
  seen = []
  for step in range(per_epoch):
    idx = pipeline.token_budget_batch(widths, budget, multiple, seed=0, step=step)
    width = {widths[i] for i in idx}
    assert len(width) == 1  # one bucket a batch, so padding stays within it.
    assert len(idx) == pipeline.budget_rows(width.pop(), budget, multiple) and len(idx) % 4 == 0
    assert len(idx) * widths[idx[0]] <= budget
    seen.extend(idx)
  assert len(seen) == len(set(seen)) > 0.9 * len(lengths)  # an epoch: each example once.
  again = pipeline.token_budget_batch(widths, budget, multiple, seed=0, step=per_epoch + 3)
  np.testing.assert_array_equal(
      again, pipeline._token_budget_epoch(0, 1, widths, budget, multiple)[3])
  assert not np.array_equal(again, pipeline.token_budget_batch(widths, budget, multiple, 0, 3))
  with pytest.raises(Exception, match='makes no whole batch'):
    pipeline.token_budget_batch(widths[:3], budget, multiple, 0, 0)


def test_data_path_then_seqlab_data_then_download(tmp_path, monkeypatch):
  import research.data as data_lib  # pylint: disable=g-import-not-at-top
  (tmp_path / 'root' / 'imdb').mkdir(parents=True)
  monkeypatch.delenv(data_lib.DATA_ENV, raising=False)
  assert data_lib.local_path('', 'imdb') == ''  # neither: the TFDS builder downloads.
  monkeypatch.setenv(data_lib.DATA_ENV, str(tmp_path / 'root'))
  assert data_lib.local_path('', 'imdb') == str(tmp_path / 'root' / 'imdb')
  assert data_lib.local_path('/my/copy', 'imdb') == '/my/copy'  # data.path wins.
  assert data_lib.local_path('', 'multi30k') == ''  # a root without the folder: download.
