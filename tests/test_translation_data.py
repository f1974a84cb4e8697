"""Tokenizers, the Multi30k and Tatoeba builders on tiny local files, and BLEU."""
import gzip
import os
import threading

import pytest

import research.data as research_data
from research.evaluation import bleu
from research.data import multi30k, tatoeba, tfds_pairs as pairs
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
  models = [(workdir / f'tokenizer_{side}' / 'spm.model').read_bytes() for side in ('source', 'target')]
  assert models[0] != models[1]  # one SentencePiece model a language, carried by the run.
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


def _aligned(root, pairs=None, split='train', gz=False):
  """train.en / train.de (line i of each a pair) in `root`."""
  pairs = pairs or list(zip(EN, DE))
  _write(f'{root}/{split}.en' + ('.gz' if gz else ''), [e for e, _ in pairs], gz=gz)
  _write(f'{root}/{split}.de', [g for _, g in pairs])
  return str(root)


def _parallel_config(root, **overrides):
  from conftest import ROOT  # pylint: disable=g-import-not-at-top
  from research import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file(str(ROOT / 'configs/transformer.py'), 'tiny')
  config.data.update(name='parallel', path=str(root), pair='en-de', vocab_size=300,
                     validation_split='newstest2013', test_split='newstest2014', **overrides)
  return config


def test_aligned_files_prepare_a_store_that_batches_read_by_position(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from research.parallel import Runtime  # pylint: disable=g-import-not-at-top
  from research.tasks.translation import TranslationTask  # pylint: disable=g-import-not-at-top
  many = [(f'{e} number {i}', f'{g} nummer {i}') for i in range(30) for e, g in zip(EN, DE)]
  root = _aligned(tmp_path / 'wmt', many, gz=True)
  _aligned(root, many[:6], 'newstest2013')
  _aligned(root, many[6:10], 'newstest2014')
  config = _parallel_config(root, bucket_boundaries=())
  task = TranslationTask(config, Runtime.create('mesh', jax.devices()[:1]))
  stores = os.listdir(os.path.join(os.environ['SEQLAB_CACHE'], 'stores'))
  assert any(s.startswith('wmt_en-de-') and not s.endswith('.lock') for s in stores)
  assert len(task.data.train) == len(many) and len(task.data.splits['test'].sources) == 4
  from research.data import pipeline  # pylint: disable=g-import-not-at-top
  for step in (0, 5):
    batch = task.train_batch(step)
    idx = pipeline.batch_indices(len(many), config.train.batch_size, config.seed, step)
    src, _ = task.src_vocab.encode_batch([many[i][0] for i in idx], task.max_src, add_eos=False)
    tgt, _ = task.tgt_vocab.encode_batch([many[i][1] for i in idx], task.max_tgt, add_eos=True)
    np.testing.assert_array_equal(batch['src'], src)
    np.testing.assert_array_equal(batch['tgt_out'], tgt)
  # The same files and settings open the same store; the vocabulary learned from a
  # bounded sample of the pairs gets its own.
  again = TranslationTask(config, Runtime.create('mesh', jax.devices()[:1]))
  assert again.data.train.files['source'].path == task.data.train.files['source'].path
  sampled = TranslationTask(_parallel_config(root, bucket_boundaries=(), tokenizer_sample=10),
                            Runtime.create('mesh', jax.devices()[:1]))
  assert sampled.data.train.files['source'].path != task.data.train.files['source'].path


def test_aligned_files_of_other_lengths_or_missing_are_clear_errors(tmp_path):
  from research.data import parallel  # pylint: disable=g-import-not-at-top
  root = _aligned(tmp_path / 'bad')
  _write(f'{root}/train.de', DE[:3])
  config = _parallel_config(root)
  with pytest.raises(UserError, match=r'train.de has 3 lines but .*train.en has more'):
    list(parallel.read_local(root, 'en-de', 'train'))
  with pytest.raises(UserError, match=r'no newstest2013.en and newstest2013.de \(or .gz\), nor '
                                      r'newstest2013.tsv'):
    parallel.read_split(config.data, 'newstest2013')
  tsv = tmp_path / 'tsv'
  _write(f'{tsv}/train.tsv', [f'{e}\t{g}' for e, g in zip(EN, DE)] + ['no tab'])
  with pytest.raises(UserError, match=r'train.tsv, line 5: expected source<TAB>target'):
    list(parallel.read_local(str(tsv), 'en-de', 'train'))


def test_a_parallel_run_prepares_trains_and_translates_from_its_workdir(tmp_path):
  from conftest import launch  # pylint: disable=g-import-not-at-top
  root = _aligned(tmp_path / 'wmt', [(f'{e} {i}', f'{g} {i}') for i in range(20)
                                     for e, g in zip(EN, DE)])
  _aligned(root, list(zip(EN, DE)), 'newstest2013')
  _aligned(root, list(zip(EN, DE)), 'newstest2014')
  cache = {**os.environ, 'SEQLAB_CACHE': str(tmp_path / 'cache')}
  args = ['--config=configs/transformer.py:tiny', '--config.data.name=parallel',
          f'--config.data.path={root}', '--config.data.pair=en-de',
          '--config.data.vocab_size=300', '--config.data.validation_split=newstest2013',
          '--config.data.test_split=newstest2014', f'--workdir={tmp_path / "run"}']
  proc = launch(*args, '--mode=prepare', env=cache)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'prepared' in proc.stderr
  proc = launch(*args, '--config.train.steps=2', env=cache)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'prepared' not in proc.stderr  # the store was ready.
  for f in os.listdir(root):
    os.remove(os.path.join(root, f))  # the corpus is gone; the run answers from its workdir.
  proc = launch(*args, '--mode=predict', input='a man rides a bike .\n\n', env=cache)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.count('\n') == 2
