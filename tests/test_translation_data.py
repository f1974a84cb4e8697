"""Tokenizers, the Multi30k and Tatoeba builders on tiny local files, and BLEU."""
import gzip
import os
import threading

import pytest

import research.data as research_data
from research import bleu
from research.data import multi30k, pairs, tatoeba
from research.data.vocab import EOS, UNK, SentencePieceVocab, WordVocab
from research.errors import UserError

DE = ['ein mann fährt rad .', 'zwei hunde spielen im schnee .', 'eine frau liest ein buch .',
      'kinder spielen fußball .']
EN = ['a man rides a bike .', 'two dogs play in the snow .', 'a woman reads a book .',
      'children play soccer .']


def _write(path, lines, gz=False):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  opener = gzip.open if gz else open
  with opener(path, 'wt', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')


def _multi30k_dir(root, with_2017=False):
  for stem, n in (('train', 4), ('val', 2), ('test_2016_flickr', 2)) + (
      (('test_2017_flickr', 1),) if with_2017 else ()):
    _write(f'{root}/raw/{stem}.de.gz', DE[:n], gz=True)
    _write(f'{root}/raw/{stem}.en', EN[:n])  # plain and gzip both work.
  return str(root)


def test_word_vocab_keeps_the_most_frequent_words():
  vocab = WordVocab.from_texts(EN, max_size=8)
  assert len(vocab) == 8 and vocab.itos[4] == '.' and vocab.itos[5] == 'a'
  ids = vocab.encode('a zebra .')
  assert ids[1] == UNK
  assert vocab.decode(ids + [EOS, 5]) == 'a <unk> .'


def test_sentencepiece_has_byte_fallback_and_is_cached(tmp_path):
  vocab = SentencePieceVocab.train(EN * 20, vocab_size=300, model_type='bpe',
                                   cache_dir=str(tmp_path))
  text = 'a dog reads ☃ ünïcode'
  ids = vocab.encode(text)
  assert UNK not in ids  # unseen characters become bytes, not <unk>.
  assert vocab.decode(ids + [EOS, 7]) == text
  mtime = os.path.getmtime(vocab.path)
  again = SentencePieceVocab.train(EN * 20, vocab_size=300, model_type='bpe',
                                   cache_dir=str(tmp_path))
  assert again.path == vocab.path and os.path.getmtime(again.path) == mtime
  other = SentencePieceVocab.train(EN * 20, vocab_size=300, model_type='unigram',
                                   cache_dir=str(tmp_path))
  assert other.path != vocab.path


def test_sentencepiece_vocab_below_the_corpus_characters_is_a_clear_error(tmp_path):
  texts = [''.join(chr(0x3b1 + i % 60) for i in range(k, k + 60)) for k in range(20)]
  with pytest.raises(UserError, match=r'data.vocab_size=280 .* at least (\d+)') as e:
    SentencePieceVocab.train(texts, vocab_size=280, model_type='bpe', cache_dir=str(tmp_path))
  need = int(str(e.value).rsplit('>= ', 1)[1])
  assert need > 280 and not os.listdir(tmp_path)  # nothing half-made is cached.
  assert len(SentencePieceVocab.train(texts, need, 'bpe', str(tmp_path))) >= need


def test_multi30k_from_a_local_directory(tmp_path):
  local = _multi30k_dir(tmp_path / 'raw_copy', with_2017=True)
  splits, prepared = pairs.load_tfds('multi30k', 'de-en', local, str(tmp_path / 'tfds'))
  assert set(splits) == {'train', 'validation', 'test2016', 'test2017'}
  assert sorted(zip(splits['train'].sources, splits['train'].targets)) == sorted(zip(DE, EN))
  assert len(splits['test2016'].sources) == 2
  assert os.path.isdir(prepared)
  reversed_pairs, _ = pairs.load_tfds('multi30k', 'en-de', local, str(tmp_path / 'tfds'))
  assert sorted(reversed_pairs['validation'].sources) == sorted(EN[:2])


def test_multi30k_missing_file_names_it_and_the_layout(tmp_path):
  local = _multi30k_dir(tmp_path / 'raw_copy')
  os.remove(f'{local}/raw/val.de.gz')
  with pytest.raises(UserError, match=r'val\.de\[\.gz\] is missing .* expected train\.'):
    pairs.load_tfds('multi30k', 'de-en', local, str(tmp_path / 'tfds'))
  with pytest.raises(UserError, match="no language pair 'de-xx'"):
    pairs.load_tfds('multi30k', 'de-xx', local, str(tmp_path / 'tfds'))


def test_tatoeba_splits_by_english_sentence(tmp_path):
  lines = [f'Sentence number {i}.\tPhrase numéro {i} !' for i in range(200)]
  lines += ['Sentence number 7.\tAutre traduction 7 !']  # a second translation stays together.
  _write(str(tmp_path / 'tat' / 'fra.txt.gz'), lines, gz=True)
  splits, _ = pairs.load_tfds('tatoeba', 'fr-en', str(tmp_path / 'tat'), str(tmp_path / 'tfds'))
  assert sum(len(s.sources) for s in splits.values()) == 201
  assert 0 < len(splits['test'].sources) < 30 and len(splits['train'].sources) > 150
  where = {t: name for name, s in splits.items() for t in s.targets}
  assert where['Sentence number 7.'] == tatoeba.split_of('Sentence number 7.')
  assert splits[where['Sentence number 7.']].targets.count('Sentence number 7.') == 2


def test_tatoeba_malformed_line_is_a_clear_error(tmp_path):
  _write(str(tmp_path / 'tat' / 'fra.txt'), ['Go.\tVa !', 'no tab here'])
  with pytest.raises(UserError, match='line 2 is not "English<TAB>translation"'):
    pairs.load_tfds('tatoeba', 'fr-en', str(tmp_path / 'tat'), str(tmp_path / 'tfds'))


def test_bleu_scores():
  perfect = bleu.corpus_scores(EN, EN)
  assert perfect['bleu'] == pytest.approx(100.0) and perfect['chrf'] == pytest.approx(100.0)
  cased = bleu.corpus_scores([s.upper() for s in EN], EN)
  assert cased['bleu'] < 5 and cased['bleu_lowercase'] == pytest.approx(100.0)
  partial = bleu.corpus_scores(['a man rides a horse .', 'two cats play in the snow .'], EN[:2])
  assert 0 < partial['bleu'] < 100


def test_seq2seq_config_trains_end_to_end_on_multi30k_files(tmp_path):
  from conftest import launch  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  local = _multi30k_dir(tmp_path / 'raw_copy')
  workdir = tmp_path / 'run'
  proc = launch('--config=configs/seq2seq.py:tiny', f'--workdir={workdir}',
                f'--config.data.path={local}', f'--config.data.data_dir={tmp_path / "tfds"}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / 'results.json').read_text())
  for split in ('validation', 'test'):
    for metric in ('bleu', 'bleu_lowercase', 'chrf', 'exact_match'):
      assert 0.0 <= results[f'{split}/{metric}'] <= 100.0
  assert list((tmp_path / 'tfds').rglob('tokenizer_source/spm_bpe_300_*.model'))
  assert list((workdir / 'plots').glob('attention_test_*.png'))
  proc = launch('--config=configs/seq2seq.py:tiny', f'--workdir={workdir}', '--mode=predict',
                f'--config.data.path={local}', f'--config.data.data_dir={tmp_path / "tfds"}',
                input='ein hund ☃ .\n\n')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert len(proc.stdout.splitlines()) == 2  # empty and unseen input still get a line.


def test_missing_multi30k_directory_is_one_clear_line(tmp_path):
  from conftest import launch  # pylint: disable=g-import-not-at-top
  proc = launch('--config=configs/seq2seq.py:tiny', f'--workdir={tmp_path / "run"}',
                f'--config.data.path={tmp_path / "nowhere"}',
                f'--config.data.data_dir={tmp_path / "tfds"}')
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: multi30k: data directory') and 'expected train.' in last


@pytest.mark.parametrize('config_file,small_model', [
    ('configs/seq2seq.py', dict(embed_dim=8, encoder_dim=8, decoder_dim=8, attention_dim=8,
                                readout_dim=8)),
    ('configs/transformer.py', dict(model_dim=8, ff_dim=16, num_heads=2, num_layers=1)),
])
def test_bench_presets_run_on_random_full_width_batches(config_file, small_model):
  from conftest import ROOT  # pylint: disable=g-import-not-at-top
  from research import config as config_lib, train  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file(os.path.join(ROOT, config_file), 'bench')
  assert config.data.name == 'random' and not config.data.path  # needs no files.
  # The benchmark shapes are big; keep the test small.
  config.data.vocab_size, config.data.train_size = 40, 64
  config.model.update(small_model)
  config.train.batch_size, config.bench.warmup_steps, config.bench.steps = 8, 1, 2
  config.bench.matmul_size = 64
  row = train.benchmark(config)
  assert row['steps'] == 2
  # 31 random words + the end token in every target: no padding is counted.
  assert row['tokens_per_second'] == pytest.approx(32 * row['examples_per_second'], rel=1e-2)
  assert row['step_gflops'] > 0 and row['mfu'] > 0


def test_bleu_by_source_length_buckets():
  sources = ['a b', 'a b c d e', 'a b c d e f g h']
  refs = ['the cat sat on the mat today', 'a dog ran in the big park', 'one two three four five']
  hyps = [refs[0], 'nothing alike at all here', refs[2]]
  scores = bleu.by_source_length(hyps, refs, sources, edges=(3, 6))
  assert list(scores) == ['bleu_len_1-3', 'bleu_len_4-6', 'bleu_len_7+']
  assert scores['bleu_len_1-3'] == pytest.approx(100.0)
  assert scores['bleu_len_4-6'] == pytest.approx(0.0)
  assert list(bleu.by_source_length(hyps, refs, sources, edges=(1,))) == [
      'bleu_len_2+']  # the empty bucket 1-1 is left out.


def test_two_local_copies_never_share_prepared_data(tmp_path):
  """The prepared array_record data (and the tokenizers beside it) belong to one copy."""
  first, second = _multi30k_dir(tmp_path / 'a'), _multi30k_dir(tmp_path / 'b')
  data_dir = str(tmp_path / 'tfds')
  splits_a, cache_a = pairs.load_tfds('multi30k', 'de-en', first, data_dir)
  _write(f'{second}/raw/train.en', ['only one line here'] * 4)  # the same layout, other text.
  splits_b, cache_b = pairs.load_tfds('multi30k', 'de-en', second, data_dir)
  assert cache_a != cache_b and splits_b['train'].targets == ['only one line here'] * 4
  assert sorted(splits_a['train'].targets) == sorted(EN[:4])
  assert pairs.load_tfds('multi30k', 'de-en', first, data_dir)[1] == cache_a  # reused.


def test_a_second_run_waits_for_the_first_to_prepare_the_data(tmp_path):
  """Two runs preparing one dataset at once (a parallel sweep) take turns: TFDS's
  final rename would fail for the later one, which then reads what the first wrote."""
  local, data_dir = _multi30k_dir(tmp_path / 'm30k'), str(tmp_path / 'tfds')
  make = lambda: multi30k.Multi30k(config='de-en', local_dir=local, file_format='array_record',
                                   data_dir=research_data.prepared_data_dir(data_dir, local))
  result = {}
  with research_data.preparing(str(make().data_dir)):  # the first run holds the data.
    second = threading.Thread(target=lambda: result.update(
        splits=pairs.load_tfds('multi30k', 'de-en', local, data_dir)[0]))
    second.start()
    second.join(timeout=3)
    assert second.is_alive()  # waiting for the lock.
    assert os.listdir(os.path.dirname(str(make().data_dir))) == ['1.0.0.lock']
    make().download_and_prepare()  # the first run prepares.
  second.join(timeout=60)
  assert not second.is_alive() and sorted(result['splits']['train'].targets) == sorted(EN)
