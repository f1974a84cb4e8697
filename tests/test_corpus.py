"""Word-vector corpora: prepared once into a store, ranked, cut into sentences, read
by block; bad input."""
import gzip

import numpy as np
import pytest

from research.data import corpus as corpus_lib, text8, words
from research.errors import UserError


def read(path, min_count=5, max_vocab=0, max_sentence=10000, errors='strict', base=None):
  spec = words.file_spec(str(path), max_sentence, errors)
  c = words.open_words(spec, str(path.parent / 'stores'), min_count, max_vocab, base)
  blocks = [c.block(b) for b in range(c.num_blocks)]
  c.tokens = np.concatenate([ids for ids, _ in blocks])
  sentence = np.concatenate([s for _, s in blocks])
  c.starts = np.r_[0, np.cumsum(np.bincount(sentence, minlength=c.sentences))]
  return c


def _read(tmp_path, text, name='c.txt', **kw):
  path = tmp_path / name
  if name.endswith('.gz'):
    with gzip.open(path, 'wb') as f:
      f.write(text.encode() if isinstance(text, str) else text)
  else:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
  return read(path, **kw)


def test_vocabulary_order_counts_and_dropped_words(tmp_path):
  c = _read(tmp_path, 'b a c a\nb d b a\n\nc e\n', min_count=2)
  # a and b both occur 3 times: ties keep the order of first appearance.
  assert c.words == ['b', 'a', 'c'] and c.counts.tolist() == [3, 3, 2]
  assert [c.words[i] for i in c.tokens] == ['b', 'a', 'c', 'a', 'b', 'b', 'a', 'c']
  assert c.starts.tolist() == [0, 4, 7, 8] and c.raw_words == 10
  assert _read(tmp_path, 'b a c a\nb d b a\n', min_count=1, max_vocab=2).words == ['b', 'a']


def test_long_lines_are_cut_and_block_boundaries_change_nothing(tmp_path, monkeypatch):
  text = ' '.join(f'w{i % 7}' for i in range(50)) + '\nw1 w2\n'
  whole = _read(tmp_path, text, min_count=1, max_sentence=20)
  assert np.diff(whole.starts).tolist() == [20, 20, 10, 2]
  monkeypatch.setattr(corpus_lib, 'CHUNK_BYTES', 7)  # blocks end mid-word and mid-line.
  small = _read(tmp_path, text, name='c.gz', min_count=1, max_sentence=20)
  assert small.words == whole.words
  np.testing.assert_array_equal(small.tokens, whole.tokens)
  np.testing.assert_array_equal(small.starts, whole.starts)


def test_directories_and_globs_read_every_file_in_order(tmp_path):
  (tmp_path / 'a.txt').write_text('x y\n')
  with gzip.open(tmp_path / 'b.gz', 'wt') as f:
    f.write('y z')
  (tmp_path / 'notes.md').write_text('ignored')
  for path in (tmp_path, tmp_path / '[ab].*'):  # a glob takes what it matches.
    c = read(path, min_count=1)
    assert c.words == ['y', 'x', 'z'] and c.starts.tolist() == [0, 2, 4]


def test_bad_corpora_are_clear_errors(tmp_path):
  with pytest.raises(UserError, match='is empty'):
    _read(tmp_path, ' \n\n ')
  with pytest.raises(UserError, match='no word occurs min_count=5 times'):
    _read(tmp_path, 'a b c a')
  with pytest.raises(UserError, match='no such file'):
    read(tmp_path / 'missing.txt')
  bad = b'caf\xe9 ok ok\n'
  with pytest.raises(UserError, match='not valid UTF-8.*encoding_errors=replace'):
    _read(tmp_path, bad, min_count=1)
  assert _read(tmp_path, bad, min_count=1, errors='replace').words == ['ok', 'caf\ufffd']


def test_subsampling_and_noise_follow_word2vec():
  counts = np.array([1000, 100, 10, 1])
  keep = corpus_lib.keep_probabilities(counts, sample=1e-2)
  t = 1e-2 * counts.sum()
  assert keep[0] == pytest.approx((np.sqrt(1000 / t) + 1) * t / 1000)
  assert keep[-1] == 1.0 and np.all(np.diff(keep) >= 0)
  assert np.all(corpus_lib.keep_probabilities(counts, 0) == 1)
  noise = corpus_lib.noise_distribution(counts)
  assert noise.sum() == pytest.approx(1) and noise[0] / noise[1] == pytest.approx(10 ** 0.75)


def test_text8_from_a_local_zip_reads_in_10000_word_pieces(tmp_path):
  import zipfile  # pylint: disable=g-import-not-at-top
  many = [f'w{i % 13}' for i in range(25000)]
  with zipfile.ZipFile(tmp_path / 'text8.zip', 'w') as z:
    z.writestr('text8', ' ' + ' '.join(many))
  source = text8.source_file(str(tmp_path))
  spec = words.file_spec(source, max_sentence=10000)
  c = words.open_words(spec, str(tmp_path / 'stores'), min_count=1)
  assert c.raw_words == 25000 and np.asarray(c.store.pieces).tolist() == [0, 10000, 20000, 25000]
  with pytest.raises(UserError, match='none of text8, text8.zip, text8.gz'):
    text8.source_file(str(tmp_path / 'stores'))


def test_blocks_of_a_long_stream_equal_the_stream_read_whole(tmp_path, monkeypatch):
  text = '\n'.join(' '.join(f'w{(7 * i + j) % 23}' for j in range(i % 9 + 1)) for i in range(300))
  whole = _read(tmp_path, text, min_count=2, max_sentence=4)
  monkeypatch.setattr(words, 'BLOCK', 37)  # blocks that cut lines and pieces.
  cut = _read(tmp_path, text, name='c.gz', min_count=2, max_sentence=4)
  assert cut.num_blocks > 10 and cut.words == whole.words
  np.testing.assert_array_equal(cut.tokens, whole.tokens)
  np.testing.assert_array_equal(cut.starts, whole.starts)


def test_growing_a_vocabulary_keeps_old_ids_and_adds_counts(tmp_path):
  old = _read(tmp_path, 'a b a c\n', min_count=1)
  assert old.words == ['a', 'b', 'c']
  new = _read(tmp_path, 'd b d e d\n', min_count=2, base=(old.words, old.counts))
  assert new.words == ['a', 'b', 'c', 'd']   # e is new and rare; a and c stay though unseen.
  assert new.counts.tolist() == [2, 2, 1, 3]
  assert [new.words[i] for i in new.tokens] == ['d', 'b', 'd', 'd']
