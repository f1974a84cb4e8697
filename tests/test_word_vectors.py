"""Word-vector evaluation (gensim's conventions) and file formats, on made-up data."""
import numpy as np
import pytest

from research import word_vectors as wvl
from research.evaluation import word_vectors as wv_eval
from research.errors import UserError

# Words in frequency order; 'queen' = king - man + woman exactly, 'paris' = france + capital.
WORDS = ['man', 'woman', 'king', 'queen', 'france', 'paris', 'capital', 'rare']
VECS = np.array([
    [1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0],
    [0, 0, 0, 1], [0, 0, .5, 1], [0, 0, 1, .3], [.2, .3, .1, .4]], np.float32)


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_analogies_count_oov_and_score_each_section(tmp_path):
  wv = wvl.WordVectors(WORDS, VECS)
  path = _write(tmp_path, 'q.txt', ': family\nMan Woman King Queen\nman woman king unknown\n'
                                   ': other\nking queen man woman\nman king rare queen\n')
  sections = wv_eval.read_analogies(path)
  assert sections[0] == ('family', [('man', 'woman', 'king', 'queen'),
                                    ('man', 'woman', 'king', 'unknown')])
  res = wv_eval.evaluate_analogies(wv, sections, restrict=8)
  assert res['oov'] == 1 and res['answered'] == 3
  assert res['sections']['family']['3cosadd'] == 1.0
  assert res['sections']['family']['3cosmul'] == 1.0
  assert res['sections']['other']['answered'] == 2
  # 'rare' is outside the 7 most frequent words: its question is skipped, not wrong.
  assert wv_eval.evaluate_analogies(wv, sections, restrict=7)['answered'] == 2


def test_analogy_never_answers_with_a_question_word():
  # b - a + c is closest to c itself here; excluded, the next word must win.
  wv = wvl.WordVectors(['a', 'b', 'c', 'd'], [[1, 0], [1, .01], [0, 1], [.1, 1]])
  res = wv_eval.evaluate_analogies(wv, [('s', [('a', 'b', 'c', 'd')])])
  assert res['3cosadd'] == 1.0 and res['3cosmul'] == 1.0


def test_chunked_analogy_scores_match_a_question_at_a_time(monkeypatch):
  rng = np.random.default_rng(0)
  words = [f'w{i}' for i in range(40)]
  wv = wvl.WordVectors(words, rng.normal(size=(40, 3)))
  ids = np.array([rng.choice(40, 4, replace=False) for _ in range(60)])
  questions = [tuple(words[i] for i in q) for q in ids]
  unit = wv.unit
  expect = {'3cosadd': 0, '3cosmul': 0}
  for a, b, c, d in ids:
    cos = unit @ unit[[a, b, c]].T
    add = cos[:, 1] - cos[:, 0] + cos[:, 2]
    half = (cos + 1) / 2
    mul = half[:, 1] * half[:, 2] / (half[:, 0] + 1e-6)
    for name, scores in (('3cosadd', add), ('3cosmul', mul)):
      scores[[a, b, c]] = -np.inf
      expect[name] += int(scores.argmax() == d)
  monkeypatch.setattr(wv_eval, 'ANALOGY_CHUNK', 7)  # 60 questions: 9 chunks, the last one short.
  res = wv_eval.evaluate_analogies(wv, [('s', questions)])
  assert 0 < expect['3cosadd'] < 60 and 0 < expect['3cosmul'] < 60
  assert res['3cosadd'] == expect['3cosadd'] / 60
  assert res['3cosmul'] == expect['3cosmul'] / 60


def test_nearest_matches_gensim_most_similar_semantics():
  wv = wvl.WordVectors(WORDS, VECS)
  assert wv.nearest(['king', 'woman'], ['man'], topn=1)[0][0] == 'queen'
  words = [w for w, _ in wv.nearest(['king'], topn=7)]
  assert 'king' not in words and len(words) == 7
  with pytest.raises(UserError, match='not in the vocabulary: prince'):
    wv.nearest(['prince'])


def test_similarity_spearman_handles_ties_and_oov(tmp_path):
  path = _write(tmp_path, 'ws.tsv', '# comment\n# more\nman\twoman\t5\nking\tqueen\t5\n'
                                    'man\tfrance\t1\nparis\tcapital\t8\nfoo\tbar\t3\n')
  pairs = wv_eval.read_pairs(path)
  res = wv_eval.evaluate_similarity(wvl.WordVectors(WORDS, VECS), pairs)
  assert res['pairs'] == 4 and res['oov'] == 1
  x, y = [5, 5, 1, 8, 2], [0.3, 0.1, 0.1, 0.9, 0.5]
  scipy_stats = pytest.importorskip('scipy.stats')
  assert wv_eval.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y)[0])


@pytest.mark.parametrize('fmt', ['word2vec', 'word2vec_binary', 'glove'])
def test_formats_round_trip_and_are_recognized(tmp_path, fmt):
  wv = wvl.WordVectors(['the', 'köln', 'x'], np.random.RandomState(0).randn(3, 5))
  path = str(tmp_path / f'v.{fmt}')
  wvl.save(wv, path, fmt)
  back = wvl.load(path)  # the format is guessed from the file.
  assert back.words == wv.words
  np.testing.assert_allclose(back.vectors, wv.vectors, rtol=1e-5)


def test_binary_without_newlines_as_gensim_writes_it(tmp_path):
  vecs = np.arange(6, dtype='<f4').reshape(2, 3)
  path = tmp_path / 'g.bin'
  path.write_bytes(b'2 3\n' + b'a ' + vecs[0].tobytes() + b'b ' + vecs[1].tobytes())
  back = wvl.load(str(path), 'word2vec_binary')
  assert back.words == ['a', 'b']
  np.testing.assert_array_equal(back.vectors, vecs)
  path.write_bytes(b'3 3\n' + b'a ' + vecs[0].tobytes())
  with pytest.raises(UserError, match='truncated at word 1 of 3'):
    wvl.load(str(path), 'word2vec_binary')


def test_gensim_reads_our_files(tmp_path):
  gensim_models = pytest.importorskip('gensim.models')
  wv = wvl.WordVectors(WORDS, VECS)
  for fmt, binary in (('word2vec', False), ('word2vec_binary', True)):
    path = str(tmp_path / fmt)
    wvl.save(wv, path, fmt)
    kv = gensim_models.KeyedVectors.load_word2vec_format(path, binary=binary)
    assert list(kv.index_to_key) == WORDS
    np.testing.assert_allclose(kv.vectors, VECS, rtol=1e-5)


def test_bad_evaluation_files_are_clear_errors(tmp_path):
  with pytest.raises(UserError, match=r'q.txt:2: expected'):
    wv_eval.read_analogies(_write(tmp_path, 'q.txt', ': s\na b c\n'))
  with pytest.raises(UserError, match=r'p.txt:1: expected'):
    wv_eval.read_pairs(_write(tmp_path, 'p.txt', 'a\tb\tlots\n'))
  with pytest.raises(UserError, match='no such evaluation file'):
    wv_eval.read_pairs(str(tmp_path / 'missing.txt'))
