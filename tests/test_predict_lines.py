"""--mode=predict writes exactly one line per input line, for every task, whatever
the input holds and whatever a model decodes: driven by arbitrary lines
(hypothesis, seeded and bounded as the readers' fuzz tests are), with models whose
vocabularies hold SentencePiece byte pieces among them."""
import io

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from multihost_worker import configured
from research import decode, train
from research.data.vocab import BOS, PAD, SentencePieceVocab
from research.tasks import Rejected
from test_translation_data import _multi30k_dir

FUZZ = settings(max_examples=20, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
QUICK = {'train.steps': 2, 'train.log_every': 1, 'eval.every': 1000, 'checkpoint.every': 1000,
         'eval.num_samples': 0}

# Text with the characters that break lines: the ASCII ones, NEL, the Unicode
# separators, NUL and other controls, beside ordinary words, digits and commas.
pieces = st.one_of(
    st.sampled_from(['\r', '\x0b', '\x0c', '\x1c', '\x1d', '\x1e', '\x85', '\u2028', '\u2029',
                     '\x00', '\t', '\x7f', '\x1b', ' ', ',', '1.5', 'the', 'king', 'ein mann',
                     'tuesday 3 march 2015', '\ufffd', '☃']),
    st.text(max_size=4))
line = st.lists(pieces, max_size=6).map(''.join).map(lambda s: s.replace('\n', ' '))
# At most 4 lines: one padded batch on the 4 test devices, so each model compiles once.
inputs = st.tuples(st.lists(line, max_size=4), st.booleans()).map(
    lambda t: '\n'.join(t[0]) + ('\n' if t[1] and t[0] else ''))


def _runs(root):
  corpus = root / 'corpus.txt'
  corpus.write_text('\n'.join(f'the king is a man and the queen is a woman {i % 7}'
                               for i in range(120)) + '\n')
  from test_popcorn import write_tsv_layout  # pylint: disable=g-import-not-at-top
  imdb, multi30k = str(write_tsv_layout(root / 'imdb')), _multi30k_dir(root / 'multi30k')
  spm = {'data.path': multi30k, 'data.data_dir': str(root / 'tfds')}
  return {
      'dates': ('configs/dates.py', 'tiny', {}),
      'seq2seq_sentencepiece': ('configs/seq2seq.py', 'tiny', spm),
      'transformer_sentencepiece': ('configs/transformer.py', 'tiny',
                                    {**spm, 'data.vocab_size': 300}),
      'lm_sentencepiece': ('configs/lm.py', 'tiny', {'data.path': str(corpus),
                                                     'data.tokenizer': 'sentencepiece',
                                                     'data.vocab_size': 300}),
      'lm_byte': ('configs/lm.py', 'tiny', {'data.path': str(corpus), 'data.tokenizer': 'byte'}),
      'word2vec': ('configs/word2vec.py', 'tiny', {'data.path': str(corpus)}),
      'glove': ('configs/glove.py', 'tiny', {'data.path': str(corpus)}),
      'popcorn': ('configs/popcorn.py', 'tiny', {'data.path': imdb}),
      'regression': ('configs/regression.py', 'tiny', {}),
  }


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('predict_lines')
  return root, _runs(root)


@pytest.mark.parametrize('name', ['dates', 'seq2seq_sentencepiece', 'transformer_sentencepiece',
                                  'lm_sentencepiece', 'lm_byte', 'word2vec', 'glove',
                                  'popcorn', 'regression'])
def test_every_task_answers_each_line_on_one_line(name, runs):
  root, specs = runs
  path, preset, overrides = specs[name]
  config = configured(dict(config=path, preset=preset, overrides={**QUICK, **overrides}))
  config.name = name
  workdir = str(root / name)
  train.train_and_evaluate(config, workdir)
  answer = train.predictor(config, workdir)

  @FUZZ
  @given(inputs)
  def one_line_each(text):
    lines = train.input_lines(text)
    assert len(lines) == text.count('\n') + (not text.endswith('\n') and text != '')
    out, err = io.StringIO(), io.StringIO()
    answers = answer(lines)
    rejected = train.write_answers(answers, out, err)
    assert out.getvalue().count('\n') == len(lines)
    assert err.getvalue().count('\n') == rejected == sum(isinstance(a, Rejected) for a in answers)

  one_line_each()


def test_input_lines_split_at_line_feeds_only():
  assert train.input_lines('') == []
  assert train.input_lines('a\r\nb\x0bc\x85\n\nd') == ['a', 'b\x0bc\x85', '', 'd']
  assert train.input_lines('a\n') == ['a']
  assert train.input_lines('\n') == ['']


def test_an_answer_is_one_line_with_controls_as_spaces():
  assert train.one_line('a\nb\r\x0bc\x85d\u2028e\x00f\tg') == 'a b  c d e f g'
  assert train.one_line('café ☃') == 'café ☃'
  out, err = io.StringIO(), io.StringIO()
  assert train.write_answers(['x\ny', Rejected('bad\nline'), ''], out, err) == 1
  assert out.getvalue() == 'x y\n\n\n'
  assert err.getvalue() == 'error: line 2: bad line\n'


def test_sentencepiece_decoders_never_emit_a_control_byte(tmp_path):
  vocab = SentencePieceVocab.train(['ein mann fährt rad .', 'zwei hunde .'] * 20, 300, 'bpe',
                                   str(tmp_path))
  never = vocab.never_emitted()
  line_feed = vocab.sp.piece_to_id('<0x0A>')
  assert line_feed in never and vocab.decode([line_feed]) == '\n'
  assert len(never) == 33 and vocab.sp.piece_to_id('<0x41>') not in never  # C0, DEL; not 'A'.

  # A decoder whose every step puts the line feed first still never emits it.
  size = len(vocab)
  favour = jnp.zeros(size).at[line_feed].set(5.0).at[2].set(-5.0)

  def step(params, context, carry, tokens):
    return carry, jnp.log(jnp.exp(favour) / jnp.exp(favour).sum())[None].repeat(
        len(tokens), 0), jnp.zeros((len(tokens), 3))

  start = lambda params, src: (None, jnp.zeros(len(src)))
  src = jnp.ones((2, 3), jnp.int32)
  for tokens in (decode.greedy(start, step, None, src, 6, never)[0],
                 decode.beam_search(start, step, None, src, beam_size=2, max_len=6,
                                    never=never)[0]):
    tokens = np.asarray(tokens)
    assert not np.isin(tokens, never + (BOS,)).any() and (tokens != PAD).all()
  assert (np.asarray(decode.greedy(start, step, None, src, 6)[0]) == line_feed).all()
