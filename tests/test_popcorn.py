"""IMDB sentiment (Bag of Words Meets Bags of Popcorn) on tiny made-up reviews."""
import gzip
import io
import json
import tarfile

import jax
import numpy as np
import pytest

from conftest import ROOT, launch
from research.data import bag, imdb, imdb_tfds
from research.errors import UserError
from research.evaluation import classification, clustering

GOOD = ['great', 'wonderful', 'superb', 'loved', 'brilliant', 'moving']
BAD = ['awful', 'boring', 'terrible', 'hated', 'dull', 'waste']
FILLER = ['the', 'film', 'plot', 'actors', 'movie', 'story', 'was', 'and', 'a', 'it']


def review(rng, label):
  words = list(rng.choice(FILLER, 12)) + list(rng.choice(GOOD if label else BAD, 3))
  rng.shuffle(words)
  return 'A <br /><br />' + ' '.join(words) + '!'


def write_tsv_layout(path, n=48, seed=0):
  rng = np.random.default_rng(seed)
  path.mkdir(parents=True, exist_ok=True)
  for split in ('train', 'test'):
    rows = ['id\tsentiment\trating\treview']
    for i in range(n):
      label = i % 2
      rating = 9 if label else 2
      rows.append(f'{i}_{rating}\t{label}\t{rating}\t{review(rng, label)}')
    (path / f'{split}.tsv.gz').write_bytes(gzip.compress('\n'.join(rows).encode() + b'\n'))
  rows = ['id\treview'] + [f'{i}_0\t{review(rng, i % 2)}' for i in range(2 * n)]
  (path / 'unsup.tsv.gz').write_bytes(gzip.compress('\n'.join(rows).encode() + b'\n'))
  return path


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  return write_tsv_layout(tmp_path_factory.mktemp('imdb'))


# --- data -----------------------------------------------------------------------------------


def test_tokenize_strips_html_keeps_negations_and_exclamations():
  assert imdb.tokenize("Don't<br /><br />miss it!! 10/10, <i>GREAT</i>") == [
      "don't", 'miss', 'it', '!', '!', '10', '10', 'great']


def test_kaggle_layout_reads_like_the_tsv_layout_with_test_labels_from_ids(data, tmp_path):
  tsv = imdb.load(str(data))
  for split, name in imdb.LAYOUTS['kaggle'].items():
    r = tsv[split]
    if split == 'train':
      rows = ['id\tsentiment\treview'] + [
          f'"{i}"\t{l}\t"{t}"' for i, l, t in zip(r.ids, r.labels, r.texts)]
    else:  # Kaggle hides the test labels; the ids (<n>_<rating>) keep them.
      rows = ['id\treview'] + [f'"{i}"\t"{t}"' for i, t in zip(r.ids, r.texts)]
    (tmp_path / name).write_text('\n'.join(rows) + '\n')
  kaggle = imdb.load(str(tmp_path))
  for split in imdb.SPLITS:
    assert kaggle[split].ids == tsv[split].ids
    assert kaggle[split].texts == tsv[split].texts
  np.testing.assert_array_equal(kaggle['test'].labels, tsv['test'].labels)
  np.testing.assert_array_equal(kaggle['train'].labels, tsv['train'].labels)
  assert np.all(kaggle['unsup'].labels == -1)


def test_bad_reviews_are_counted_or_clear_errors(tmp_path):
  def write(rows, name='train.tsv.gz'):
    (tmp_path / name).write_bytes(gzip.compress(b'\n'.join(rows) + b'\n'))
  header = b'id\tsentiment\trating\treview'
  write([header, b'0_9\t1\t9\tfine film', b'1_2\t0\t2\t<br /><br />', b'2_2\t0\t2\tbad'])
  r = imdb._read_tsv(str(tmp_path / 'train.tsv.gz'), 'tsv', 'strict')
  assert r.ids == ['0_9', '2_2'] and r.skipped_empty == 1  # the empty review: a counted skip.
  write([header, b'0_9\tpositive\t9\tfine film'])
  with pytest.raises(UserError, match="line 2: unknown sentiment label 'positive'"):
    imdb._read_tsv(str(tmp_path / 'train.tsv.gz'), 'tsv', 'strict')
  write([header, b'0_9\t1\t9\tna\xefve \xff film'])
  with pytest.raises(UserError, match='line 2: bytes that are not UTF-8'):
    imdb._read_tsv(str(tmp_path / 'train.tsv.gz'), 'tsv', 'strict')
  r = imdb._read_tsv(str(tmp_path / 'train.tsv.gz'), 'tsv', 'replace')
  assert '\ufffd' in r.texts[0]
  write([header, b'0_9\t1\tfine film'])
  with pytest.raises(UserError, match='3 tab-separated fields, expected 4'):
    imdb._read_tsv(str(tmp_path / 'train.tsv.gz'), 'tsv', 'strict')
  with pytest.raises(UserError, match='neither layout'):
    imdb.load(str(tmp_path))


def test_tfds_builder_reads_the_aclimdb_archive(data, tmp_path):
  tsv = imdb.load(str(data), ('train', 'unsup'))
  archive = tmp_path / 'aclImdb_v1.tar.gz'
  with tarfile.open(archive, 'w:gz') as tar:
    def add(name, text):
      raw = text.encode()
      info = tarfile.TarInfo(name)
      info.size = len(raw)
      tar.addfile(info, io.BytesIO(raw))
    for i, t, l in zip(tsv['train'].ids, tsv['train'].texts, tsv['train'].labels):
      add(f'aclImdb/train/{"pos" if l else "neg"}/{i}.txt', t)
      add(f'aclImdb/test/{"pos" if l else "neg"}/{i}.txt', t)
    for i, t in zip(tsv['unsup'].ids, tsv['unsup'].texts):
      add(f'aclImdb/train/unsup/{i}.txt', t)
  from_tfds = lambda split: imdb._from_records(  # pylint: disable=protected-access
      imdb_tfds.records(split, str(tmp_path / 'tfds'), archive=str(archive)))
  got = from_tfds('train')
  assert sorted(zip(got.ids, got.texts, got.labels)) == sorted(
      zip(tsv['train'].ids, tsv['train'].texts, tsv['train'].labels))
  assert len(from_tfds('unsup').ids) == len(tsv['unsup'].ids)


# --- features and models --------------------------------------------------------------------


def dense_of(s: bag.Sparse):
  out = np.zeros((len(s), s.dim))
  for r in range(len(s)):
    np.add.at(out[r], s.index[r], s.value[r])
  return out


@pytest.mark.parametrize('scheme', ['bow', 'tfidf'])
def test_features_equal_scikit_learn_vectorizers(data, scheme):
  from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
  from sklearn.preprocessing import normalize
  docs = [imdb.tokenize(t) for t in imdb.load(str(data), ('train',))['train'].texts]
  n_max = 1 if scheme == 'bow' else 2
  vocab = bag.build_vocabulary(docs, n_max, 0, 2)
  ours = dense_of(bag.weight(bag.term_counts(docs, vocab), scheme, vocab))
  kw = dict(analyzer=lambda d: bag.ngrams(d, n_max), min_df=2)
  ref = (normalize(CountVectorizer(**kw).fit_transform(docs)) if scheme == 'bow'
         else TfidfVectorizer(sublinear_tf=True, **kw).fit_transform(docs))
  names = (CountVectorizer if scheme == 'bow' else TfidfVectorizer)(**kw).fit(docs).get_feature_names_out()
  order = [vocab.index[t] for t in names]
  assert sorted(names) == sorted(vocab.terms)
  np.testing.assert_allclose(ours[:, order], ref.toarray(), atol=1e-6)


def test_kmeans_finds_separated_clusters_and_never_raises_the_inertia():
  rng = np.random.default_rng(0)
  centers = rng.standard_normal((5, 3)) * 10
  x = np.concatenate([c + rng.standard_normal((40, 3)) * 0.1 for c in centers])
  _, assign, inertia = jax.jit(clustering.kmeans, static_argnums=(1, 3))(
      x, 5, jax.random.PRNGKey(0), 10)
  assign = np.asarray(assign).reshape(5, 40)
  assert all(len(set(row)) == 1 for row in assign) and len({row[0] for row in assign}) == 5
  assert np.all(np.diff(np.asarray(inertia)) <= 1e-3)


def test_auc_and_f1_equal_scikit_learn():
  from sklearn.metrics import f1_score, roc_auc_score
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 2, 300).astype(np.float32)
  scores = np.round(np.clip(labels * 0.3 + rng.uniform(size=300) * 0.7, 0, 1), 2)  # with ties.
  m = classification.classification_metrics(labels, scores)
  assert m['auc'] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
  assert m['f1'] == pytest.approx(f1_score(labels, scores > 0.5), abs=1e-12)
  assert m['accuracy'] == pytest.approx(np.mean((scores > 0.5) == labels))


# --- end to end -----------------------------------------------------------------------------


def run(data, workdir, *overrides):
  proc = launch('--config=configs/popcorn.py:tiny', f'--workdir={workdir}',
                f'--config.data.path={data}', *overrides)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads((workdir / 'results.json').read_text())


def test_tfidf_run_classifies_and_writes_submission_and_roc(data, tmp_path):
  results = run(data, tmp_path)
  assert results['test/accuracy'] >= 0.9 and results['test/auc'] >= 0.95
  assert 0 <= results['test/f1'] <= 1
  lines = (tmp_path / 'submission.csv').read_text().splitlines()
  assert lines[0] == 'id,sentiment' and len(lines) == 49
  assert lines[1].startswith('"0_2",') and lines[1][-1] in '01'
  assert (tmp_path / 'plots' / 'roc.png').stat().st_size > 0
  # The workdir carries the fitted featurizer: predict reads no review.
  proc = launch('--config=configs/popcorn.py:tiny', f'--workdir={tmp_path}',
                f'--config.data.path={tmp_path / "moved"}', '--mode=predict',
                input='wonderful superb great film\nawful boring terrible waste\n')
  assert proc.returncode == 0, proc.stderr[-2000:]
  first, second = proc.stdout.strip().splitlines()[-2:]
  assert first.endswith('positive') and second.endswith('negative')


@pytest.mark.parametrize('preset_features', ['avg_vectors', 'centroids'])
def test_word_vector_methods_train_word2vec_on_the_reviews_first(data, tmp_path, preset_features):
  results = run(data, tmp_path, f'--config.data.features={preset_features}',
                '--config.data.words_per_cluster=2')
  assert (tmp_path / 'word2vec' / 'vectors.bin').exists()  # trained on train + unlabeled reviews.
  assert results['test/accuracy'] >= 0.75
  # eval scores from the workdir's featurizer (no word vectors read) what training scored.
  (tmp_path / 'word2vec' / 'vectors.bin').unlink()
  proc = launch('--config=configs/popcorn.py:tiny', f'--workdir={tmp_path}',
                f'--config.data.path={data}', f'--config.data.features={preset_features}',
                '--config.data.words_per_cluster=2', '--mode=eval')
  assert proc.returncode == 0, proc.stderr[-2000:]
  evaluated = json.loads(proc.stdout.strip().splitlines()[-1])
  assert evaluated['test/accuracy'] == pytest.approx(results['test/accuracy'])


def test_encoder_starts_from_the_word_vectors(data, tmp_path):
  results = run(data, tmp_path, '--config.data.features=tokens', '--config.model.name=sentiment_encoder',
                '--config.model.init_from_vectors=True', '--config.optimizer.learning_rate=0.01')
  assert 0.5 <= results['test/accuracy'] <= 1 and np.isfinite(results['test/log_loss'])
  from research import word_vectors
  from research.config import load_config_file
  from research.parallel import Runtime
  from research.tasks.popcorn import PopcornTask
  config = load_config_file(str(ROOT / 'configs/popcorn.py'), 'tiny')
  config.data.path, config.data.features, config.model.name = str(data), 'tokens', 'sentiment_encoder'
  config.model.init_from_vectors = True
  config.data.vectors = str(tmp_path / 'word2vec' / 'vectors.bin')
  task = PopcornTask(config, Runtime.create('mesh', jax.devices()[:1]))
  table = np.asarray(task.init(jax.random.PRNGKey(0))['embed']['embedding'])
  wv = word_vectors.load(config.data.vectors)
  np.testing.assert_array_equal(table[task.words.index('great')], wv.vectors[wv.index['great']])


def test_a_long_review_is_scored_as_the_mean_logit_over_all_its_views(data):
  from research.config import load_config_file
  from research.parallel import Runtime
  from research.tasks.popcorn import PopcornTask
  config = load_config_file(str(ROOT / 'configs/popcorn.py'), 'tiny')
  config.data.path, config.data.features, config.model.name = str(data), 'tokens', 'sentiment_encoder'
  config.data.max_length, config.data.eval_stride = 16, 8
  task = PopcornTask(config, Runtime.create('mesh', jax.devices()[:1]))
  params = task.init(jax.random.PRNGKey(0))
  words = task.words[2:]
  docs = [words[:5], [words[i % len(words)] for i in range(30)]]
  ids = [task.words.index(w) for w in docs[1]]
  views = task.window_views(docs)
  np.testing.assert_array_equal(views['owner'], [1, 1, 1])  # windows at 0, 8 and 30 - 16.
  np.testing.assert_array_equal(views['tokens'], [ids[0:16], ids[8:24], ids[14:30]])
  head_tail = task.featurize(docs)
  np.testing.assert_array_equal(head_tail['tokens'][1], ids[:8] + ids[-8:])
  logit = lambda rows: np.asarray(task.logits(params, {'tokens': np.asarray(rows, np.int32)}))
  p = task.probabilities(params, head_tail, views)
  expected = np.mean(np.r_[logit(head_tail['tokens'][1:]), logit(views['tokens'])])
  np.testing.assert_allclose(p[1], 1 / (1 + np.exp(-expected)), rtol=1e-5)
  np.testing.assert_allclose(p[0], task.probabilities(params, head_tail)[0], rtol=1e-6)
  assert abs(p[1] - task.probabilities(params, head_tail)[1]) > 1e-6  # the windows count.


def test_bad_input_is_one_clear_line(data, tmp_path):
  bad = tmp_path / 'bad'
  bad.mkdir()
  for name in ('test.tsv.gz', 'unsup.tsv.gz'):
    (bad / name).write_bytes((data / name).read_bytes())
  (bad / 'train.tsv.gz').write_bytes(gzip.compress(
      b'id\tsentiment\trating\treview\n0_9\t7\t9\tgood film\n'))
  proc = launch('--config=configs/popcorn.py:tiny', f'--workdir={tmp_path / "w"}',
                f'--config.data.path={bad}')
  assert proc.returncode == 2
  assert "unknown sentiment label '7'" in proc.stderr.strip().splitlines()[-1]
  proc = launch('--config=configs/popcorn.py:tiny', f'--workdir={tmp_path / "w"}',
                f'--config.data.path={tmp_path / "missing"}')
  assert proc.returncode == 2 and 'is not a directory' in proc.stderr.strip().splitlines()[-1]


def test_paper_points_are_exactly_the_presets():
  from research import config as config_lib
  paper = config_lib.load_config_module(str(ROOT / 'configs/papers/popcorn.py'))
  popcorn = config_lib.load_config_module(str(ROOT / 'configs/popcorn.py'))
  for point, method in zip(paper.get_sweep(), paper.METHODS):
    config = paper.get_config()
    assert config.data.word2vec_dir == '../word2vec'  # one word2vec run for the sweep.
    for key, value in point.items():
      section, name = key.split('.')
      config[section][name] = value
    preset = popcorn.get_config(method)
    preset.data.word2vec_dir = '../word2vec'
    assert config.to_dict() == preset.to_dict(), method


def test_report_draws_one_roc_for_all_methods(tmp_path):
  from research import reproduce
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 200).astype(np.float32)
  for point, noise in (('base', 0.3), ('data.features=bow', 0.8)):
    (tmp_path / point).mkdir()
    (tmp_path / point / 'results.json').write_text(json.dumps({'step': 5, 'test/accuracy': 0.9}))
    np.savez(tmp_path / point / 'test_scores.npz', ids=np.arange(200).astype(str), labels=labels,
             probabilities=np.clip(labels + noise * rng.standard_normal(200), 0, 1))
  paper = dict(title='T', roc='roc.png', results=[
      dict(label='tfidf', point={}, metric='test/accuracy', paper=0.89),
      dict(label='bow', point={'data.features': 'bow'}, metric='test/accuracy', paper=0.84),
      dict(label='neural', point={'data.features': 'tokens'}, metric='test/accuracy', paper=None)])
  report = open(reproduce.write_report(str(tmp_path), paper, 'paper.py')).read()
  assert '| tfidf | test/accuracy | 0.89 | 0.9 | +0.01 |' in report
  assert '| neural | test/accuracy | - | not run |  |' in report
  assert (tmp_path / 'roc.png').stat().st_size > 1000 and '![roc.png](roc.png)' in report
