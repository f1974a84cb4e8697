"""The readers, driven by arbitrary files: each input reads, or raises UserError.

Seeded and bounded (hypothesis' derandomize, a fixed number of examples), so the
suite's time and outcome do not vary. Files mix well-formed rows with damage:
byte-order marks, other encodings, \\r\\n and bare \\r line ends, ragged rows, NUL
bytes, empty files, gzip streams cut short and raw random bytes.
"""
import gzip
import os
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from research.data import imdb, multi30k, store, tabular, text_files
from research.data import words as words_lib
from research.errors import UserError

FUZZ = settings(max_examples=150, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

cells = st.one_of(st.integers(-1000, 1000).map(str), st.floats(allow_nan=True).map(repr),
                  st.text(max_size=6), st.sampled_from(['', ' ', '"', '1e309', 'nan', 'y']))


@st.composite
def damaged(draw, rows):
  """Bytes of a file built from `rows` (lists of cells, or a strategy of them) with
  one kind of damage; and whether they are gzipped."""
  if isinstance(rows, st.SearchStrategy):
    rows = draw(rows)
  sep = draw(st.sampled_from([',', '\t']))
  end = draw(st.sampled_from(['\n', '\r\n', '\r']))
  text = end.join(sep.join(r) for r in rows) + draw(st.sampled_from(['', end]))
  encoding = draw(st.sampled_from(['utf-8', 'utf-8-sig', 'utf-16', 'latin-1']))
  raw = text.encode(encoding, errors='replace')
  kind = draw(st.sampled_from(['plain', 'gzip', 'cut_gzip', 'random', 'nul', 'empty']))
  if kind == 'gzip':
    raw = gzip.compress(raw)
  elif kind == 'cut_gzip':
    raw = gzip.compress(raw)[:draw(st.integers(0, 40))]
  elif kind == 'random':
    raw = draw(st.binary(max_size=200))
  elif kind == 'nul':
    raw = raw[:len(raw) // 2] + b'\x00' + raw[len(raw) // 2:]
  elif kind == 'empty':
    raw = b''
  return raw, kind in ('gzip', 'cut_gzip')


def table(header):
  return st.lists(st.lists(cells, min_size=0, max_size=len(header) + 2), max_size=8).map(
      lambda rows: [header] + rows)


def _write(directory, name, raw):
  path = os.path.join(directory, name)
  with open(path, 'wb') as f:
    f.write(raw)
  return path


def _reads_or_user_error(read):
  try:
    read()
  except UserError:
    pass


@FUZZ
@given(damaged(table(['y', 'x1', 'x2'])))
def test_csv_reader(file):
  raw, _ = file
  with tempfile.TemporaryDirectory() as d:
    path = _write(d, 'data.csv', raw)
    _reads_or_user_error(lambda: tabular.read_csv(path, 'y', nonfinite='drop'))
    _reads_or_user_error(lambda: tabular.read_csv(path, 'y', 'x1', nonfinite='error'))


@FUZZ
@given(damaged(table(['id', 'sentiment', 'review'])), st.sampled_from(['tsv', 'kaggle']),
       st.sampled_from(['strict', 'replace']))
def test_imdb_tsv_reader(file, layout, errors):
  raw, zipped = file
  with tempfile.TemporaryDirectory() as d:
    name = 'train.tsv.gz' if zipped else 'labeledTrainData.tsv'
    path = _write(d, name, raw)
    _reads_or_user_error(lambda: imdb._read_tsv(path, layout, errors))  # pylint: disable=protected-access


words = st.lists(st.text(alphabet='abc \t\u00e9\ufeff\x00', max_size=8), max_size=6)


@FUZZ
@given(damaged([['the cat sat'], ['on the mat']]),
       st.lists(words, max_size=6), st.sampled_from(['strict', 'replace']))
def test_corpus_readers(file, lines, errors):
  raw, zipped = file
  if not raw:  # the structured file above, varied by the drawn lines.
    raw = '\n'.join(' '.join(w) for w in lines).encode('utf-8', errors='replace')
  with tempfile.TemporaryDirectory() as d:
    path = _write(d, 'corpus.txt.gz' if zipped else 'corpus.txt', raw)
    _reads_or_user_error(lambda: store.prepare(words_lib.file_spec(path, 10000, errors),
                                               f'{d}/words', False))
    for tokenizer in ('char', 'sentencepiece'):
      _reads_or_user_error(lambda: store.prepare(
          store.Spec(path, tokenizer, 300, encoding_errors=errors), f'{d}/{tokenizer}', False))


@FUZZ
@given(damaged([['ein hund'], ['zwei katzen']]), damaged([['a dog'], ['two cats']]))
def test_parallel_text_reader(source, target):
  with tempfile.TemporaryDirectory() as d:
    src = _write(d, 'train.de.gz' if source[1] else 'train.de', source[0])
    tgt = _write(d, 'train.en.gz' if target[1] else 'train.en', target[0])
    _reads_or_user_error(lambda: multi30k._read_pairs(src, tgt))  # pylint: disable=protected-access
    _reads_or_user_error(lambda: text_files.read_lines(src))


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
  path = tmp_path / 'excel.csv'
  path.write_bytes('y,x1\r\n1,2\r\n2,4\r\n3,7\r\n'.encode('utf-8-sig'))
  X, y, names, _ = tabular.read_csv(str(path), 'y')
  assert names == ['x1'] and y.tolist() == [1, 2, 3] and X[:, 0].tolist() == [2, 4, 7]
  lines = tmp_path / 'lines.txt'
  lines.write_bytes('\ufeffein hund\r\nzwei katzen\r\n'.encode('utf-8'))
  assert text_files.read_lines(str(lines)) == ['ein hund', 'zwei katzen']


def test_a_cut_gzip_is_one_user_error_naming_the_file(tmp_path):
  path = tmp_path / 'corpus.txt.gz'
  path.write_bytes(gzip.compress(b'the cat sat on the mat\n' * 50)[:30])
  for read in (lambda: store.prepare(words_lib.file_spec(str(path), 10000), str(tmp_path / 'w'), False),
               lambda: text_files.read_lines(str(path)),
               lambda: store.prepare(store.Spec(str(path)), str(tmp_path / 'store'), False)):
    try:
      read()
    except UserError as e:
      assert 'corpus.txt.gz' in str(e)
    else:
      raise AssertionError('a cut gzip stream read without an error')
