"""Prepared token stores: what they hold, how they are keyed, and that a damaged,
unfinished or mistaken one is never read as data."""
import errno
import gzip
import json
import os
import socket

import numpy as np
import pytest

from conftest import launch
from research.data import lm_corpus, sources, store
from research.data.vocab import EOS, ByteVocab
from research.errors import UserError

DOCS = ['the cat sat on the mat\n', 'a dog ran in the park', 'é ☃ birds sang\n\nin trees ']


def _corpus(root):
  root.mkdir(parents=True, exist_ok=True)
  (root / 'a.txt').write_text(DOCS[0])
  with gzip.open(root / 'b.gz', 'wt') as f:
    f.write(DOCS[1])
  (root / 'c.txt').write_text(DOCS[2])
  return str(root)


@pytest.mark.parametrize('tokenizer', ['char', 'byte', 'word', 'sentencepiece'])
def test_a_store_holds_each_document_then_its_end(tmp_path, tokenizer):
  path = _corpus(tmp_path / 'corpus')
  spec = store.Spec(path, tokenizer, vocab_size=280 if tokenizer == 'sentencepiece' else 20)
  s = store.open_or_prepare(spec, str(tmp_path / 'stores'), progress=False)
  tokens = s.tokens.read(0, len(s))
  ends = np.flatnonzero(tokens == EOS)
  assert len(ends) == 3 and ends[-1] == len(tokens) - 1
  np.testing.assert_array_equal(s.documents[:, 0], np.r_[0, ends + 1])
  np.testing.assert_array_equal(s.documents[:, 1], np.cumsum([0] + [len(d) for d in DOCS]))
  pieces = np.split(tokens, ends[:-1] + 1)
  for doc, ids in zip(DOCS, pieces):
    if tokenizer in ('char', 'byte'):
      assert s.vocab.decode(ids) == doc
    elif tokenizer == 'word':
      assert s.vocab.decode(ids) == ' '.join(doc.split())
    else:
      assert s.vocab.decode(ids) == ' '.join(doc.split())  # SentencePiece normalizes spaces.
  assert s.characters(0, len(s)) == sum(map(len, DOCS))
  assert s.tokens.dtype == (np.uint16 if tokenizer in ('byte', 'sentencepiece') else np.uint8)
  # The same spec opens the same store; another tokenizer setting gets its own.
  assert store.open_or_prepare(spec, str(tmp_path / 'stores'), False).path == s.path
  if tokenizer in ('word', 'sentencepiece'):
    other = store.Spec(path, tokenizer, vocab_size=spec.vocab_size + 10)
    assert other.folder() != spec.folder()


def test_windows_read_by_position_equal_the_array(tmp_path):
  path = tmp_path / 'corpus.txt'
  path.write_text('abcdefghij' * 50)
  s = store.open_or_prepare(store.Spec(str(path)), str(tmp_path / 'stores'), False)
  everything = s.tokens.read(0, len(s))
  part = s.tokens.part(100, 300)
  starts = np.array([0, 7, 190])
  np.testing.assert_array_equal(part.windows(starts, 10),
                                everything[100 + starts[:, None] + np.arange(10)])
  np.testing.assert_array_equal(store.Tokens(everything).part(100, 300).windows(starts, 10),
                                part.windows(starts, 10))


def test_json_lines_are_documents_and_a_missing_field_names_its_line(tmp_path):
  good = tmp_path / 'web.jsonl'
  good.write_text('\n'.join(json.dumps({'text': t, 'id': i}) for i, t in enumerate(DOCS)) + '\n')
  s = store.open_or_prepare(store.Spec(str(good), 'byte'), str(tmp_path / 'stores'), False)
  assert (s.tokens.read(0, len(s)) == EOS).sum() == 3
  bad = tmp_path / 'bad.jsonl'
  bad.write_text(json.dumps({'text': 'fine'}) + '\n' + json.dumps({'body': 'no text'}) + '\n')
  with pytest.raises(UserError, match=r"bad.jsonl, line 2: no text field 'text' "
                                      r"\(data.text_field\); the line holds \['body'\]"):
    store.open_or_prepare(store.Spec(str(bad)), str(tmp_path / 'stores'), False)
  spec = store.Spec(str(bad), text_field='body')
  with pytest.raises(UserError, match='line 1: no text field'):
    store.open_or_prepare(spec, str(tmp_path / 'stores'), False)


def test_an_empty_corpus_is_a_clear_error_and_leaves_no_store(tmp_path):
  empty = tmp_path / 'empty.txt'
  empty.write_text('')
  for tokenizer in ('char', 'byte', 'sentencepiece'):
    with pytest.raises(UserError, match='is empty'):
      store.open_or_prepare(store.Spec(str(empty), tokenizer, 300), str(tmp_path / 's'), False)
  assert not [p for p in os.listdir(tmp_path / 's') if not p.endswith('.lock')]


def test_a_long_line_streams_in_chunks(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, 'CHUNK', 1000)  # a "line" 50 chunks long.
  path = tmp_path / 'one_line.txt'
  text = ' '.join(['alpha', 'beta', 'gamma', 'dé'] * 2500)
  path.write_text(text)
  reader = sources.Reader([str(path)])
  chunks = list(reader.chunks())
  assert len(chunks) > 50 and max(len(t) for t, _ in chunks) <= 1000
  assert ''.join(t for t, _ in chunks) == text and chunks[-1][1]
  for tokenizer in ('char', 'word'):
    s = store.open_or_prepare(store.Spec(str(path), tokenizer, 10), str(tmp_path / 's'), False)
    decoded = s.vocab.decode(s.tokens.read(0, len(s)))
    assert decoded == text


def test_a_store_cut_short_or_changed_is_prepared_again(tmp_path, caplog):
  path = _corpus(tmp_path / 'corpus')
  spec = store.Spec(path)
  s = store.open_or_prepare(spec, str(tmp_path / 'stores'), False)
  expected = s.tokens.read(0, len(s)).copy()
  tokens = os.path.join(s.path, 'tokens.bin')
  with open(tokens, 'r+b') as f:
    f.truncate(10)
  with pytest.raises(store.Damaged, match='cut short'):
    store.Store(s.path)
  again = store.open_or_prepare(spec, str(tmp_path / 'stores'), False)
  np.testing.assert_array_equal(again.tokens.read(0, len(again)), expected)
  assert 'is unusable' in caplog.text
  with open(tokens, 'r+b') as f:  # the same size, other bytes.
    f.write(b'\x07' * 5)
  with pytest.raises(store.Damaged, match='written after it was prepared'):
    store.Store(s.path)
  again = store.open_or_prepare(spec, str(tmp_path / 'stores'), False)
  np.testing.assert_array_equal(again.tokens.read(0, len(again)), expected)


def test_a_changed_source_gets_a_new_store(tmp_path):
  path = tmp_path / 'corpus.txt'
  path.write_text('abc ' * 20)
  first = store.Spec(str(path)).folder()
  path.write_text('abd ' * 20)
  assert store.Spec(str(path)).folder() != first


def test_a_failed_preparation_leaves_nothing_and_a_rerun_finishes(tmp_path, monkeypatch):
  path = _corpus(tmp_path / 'corpus')
  spec, root = store.Spec(path, 'byte'), str(tmp_path / 'stores')
  real = ByteVocab.encode_array
  calls = []

  def full_disk(self, text):
    calls.append(text)
    if len(calls) == 2:
      raise OSError(errno.ENOSPC, 'No space left on device')
    return real(self, text)

  monkeypatch.setattr(ByteVocab, 'encode_array', full_disk)
  with pytest.raises(UserError, match='the disk is full; nothing was kept'):
    store.open_or_prepare(spec, root, False)
  assert [p for p in os.listdir(root) if not p.endswith('.lock')] == []
  # What a preparation killed outright leaves (a temporary folder) is never opened.
  stale = f'{spec.folder()}.tmp-{socket.gethostname()}-999999999'  # a process that is gone.
  os.makedirs(os.path.join(root, stale, 'tokenizer'))
  monkeypatch.setattr(ByteVocab, 'encode_array', real)
  s = store.open_or_prepare(spec, root, False)
  assert (s.tokens.read(0, len(s)) == EOS).sum() == 3
  assert [p for p in os.listdir(root) if not p.endswith('.lock')] == [spec.folder()]


def test_mixture_weights_and_corpora_are_checked(tmp_path):
  class D(dict):
    __getattr__ = dict.get
  assert lm_corpus.mixture(D(mixture='a.txt:0.7, b/c.txt:0.3')) == [('a.txt', 0.7),
                                                                   ('b/c.txt', 0.3)]
  for bad in ('a.txt:0', 'a.txt:-1', 'a.txt', 'a.txt:x', ':1'):
    with pytest.raises(UserError, match='expected PATH:WEIGHT with a weight > 0'):
      lm_corpus.mixture(D(mixture=bad))
  with pytest.raises(UserError, match="corpus '.*missing.txt': no such file"):
    lm_corpus.source_paths(D(name='text', mixture=f'{tmp_path}/missing.txt:1'))


def test_a_mixture_draws_rows_by_weight_with_one_tokenizer(tmp_path):
  (tmp_path / 'a.txt').write_text('aaaa ' * 400)
  (tmp_path / 'b.txt').write_text('bbbb ' * 400)
  from conftest import ROOT  # pylint: disable=g-import-not-at-top
  from research import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file(str(ROOT / 'configs/lm.py'), 'tiny')
  config.data.mixture = f'{tmp_path}/a.txt:3,{tmp_path}/b.txt:1'
  corpus = lm_corpus.load(config.data, 16)
  assert [s.vocab.itos for s in corpus.stores][1] == corpus.vocab.itos  # b's uses a's.
  rows = np.concatenate([corpus.batch(0, step, 64, 5) for step in range(20)])
  from_b = np.mean([corpus.vocab.decode(r).strip() in ('b', 'bb', 'bbb', 'bbbb', '')
                    and 'a' not in corpus.vocab.decode(r) for r in rows])
  assert 0.18 < from_b < 0.32  # a quarter, by weight.
  np.testing.assert_array_equal(corpus.batch(0, 7, 64, 5), corpus.batch(0, 7, 64, 5))
  assert 'a' in corpus.vocab.decode(corpus.splits['test'].read(0, 10))  # the first corpus's.


def test_prepare_mode_then_predict_reads_only_the_workdir(tmp_path):
  corpus = tmp_path / 'corpus.txt'
  corpus.write_text(' '.join(['the cat sat on a mat'] * 200))
  cache = {**os.environ, 'SEQLAB_CACHE': str(tmp_path / 'cache')}
  args = ['--config=configs/lm.py:tiny', f'--config.data.path={corpus}', f'--workdir={tmp_path}/run']
  proc = launch(*args, '--mode=prepare', env=cache)
  assert proc.returncode == 0, proc.stderr[-2000:]
  row = json.loads(proc.stdout.strip().splitlines()[-1])
  assert len(row['stores']) == 1 and os.path.isfile(os.path.join(row['stores'][0], 'meta.json'))
  proc = launch(*args, '--config.train.steps=2', env=cache)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'preparing' not in proc.stderr and 'prepared ' not in proc.stderr  # it was ready.
  corpus.unlink()  # neither the corpus nor its store is needed to answer.
  proc = launch(*args, '--mode=predict', input='the cat\n',
                env={**cache, 'SEQLAB_CACHE': str(tmp_path / 'empty')})
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert len(proc.stdout.splitlines()) == 1


def test_a_lone_surrogate_in_json_lines_is_an_error_or_replaced(tmp_path):
  path = tmp_path / 'web.jsonl'
  path.write_text('{"text": "ok"}\n{"text": "half an emoji \\ud83d here"}\n')
  with pytest.raises(UserError, match=r'web.jsonl, line 2: text that is not valid Unicode'):
    store.open_or_prepare(store.Spec(str(path), 'byte'), str(tmp_path / 's'), False)
  s = store.open_or_prepare(store.Spec(str(path), 'byte', encoding_errors='replace'),
                            str(tmp_path / 's'), False)
  assert s.vocab.decode(s.tokens.read(3, len(s))) == 'half an emoji ? here'


@pytest.mark.parametrize('text', ['the cat sat\non the mat\n' * 40, 'ascii then \x02 control'])
def test_the_one_pass_for_ascii_writes_what_two_passes_write(tmp_path, monkeypatch, text):
  (tmp_path / 'a.txt').write_text(text)
  (tmp_path / 'b.txt').write_text(text[::-1])
  spec = store.Spec(str(tmp_path / '*.txt'))
  one = store.prepare(spec, str(tmp_path / 'one'), False)
  monkeypatch.setattr(store, '_ascii_chars', lambda *args: None)
  two = store.prepare(spec, str(tmp_path / 'two'), False)
  for name in ('tokens.bin', 'documents.bin', 'tokenizer/vocab.json'):
    assert (tmp_path / 'one' / name).read_bytes() == (tmp_path / 'two' / name).read_bytes()
  assert one['tokens'] == two['tokens'] == 2 * len(text) + 2
