"""Word analogies and similarity of word2vec (Mikolov et al. 2013) on the
text8-style corpus, beside the reference programs run on the same corpus.

The points are configs/word2vec.py's skipgram and cbow presets (dim 100, window
5, 5 epochs, min_count 5, negative 5, sample 1e-3). The "paper" column holds
the original word2vec C tool's figures on this corpus with these settings (2
threads, measured for ../shared/bench/README.md); Mikolov et al. trained on
billions of words, so their tables' values do not transfer to a 17M-word corpus.

Run:  python launch.py --reproduce=word2vec_analogies   (2 points; resumable)
Writes runs/papers/word2vec_analogies/report.md.
Measured (2 CPU cores, 2026-11-26): 3 min 0 s for both points. Skip-gram
reached analogy 3CosAdd 0.418 and WS353 0.649; CBOW 0.300 and 0.586. The
separate preset runs gave the same parameters, bit for bit.
"""
from research.config import overrides, shipped_config

_W2V = shipped_config('word2vec')
_CBOW = overrides(_W2V.get_config('skipgram'), _W2V.get_config('cbow'))

PAPER = dict(
    title='Efficient Estimation of Word Representations in Vector Space (word2vec)',
    authors='Mikolov, Chen, Corrado and Dean', year=2013,
    where='the analogy task of Table 1 (questions-words), and WordSim-353; reference values: '
          'the original C tool on the same 17M-word corpus',
    results=[
        dict(label='skip-gram', point={}, metric='analogy/3cosadd', paper=0.259),
        dict(label='skip-gram', point={}, metric='similarity/ws353', paper=0.601),
        dict(label='skip-gram', point={}, metric='analogy/3cosmul', paper=None),
        dict(label='CBOW', point=_CBOW, metric='analogy/3cosadd', paper=0.275),
        dict(label='CBOW', point=_CBOW, metric='similarity/ws353', paper=0.588),
        dict(label='CBOW', point=_CBOW, metric='analogy/3cosmul', paper=None)],
    notes="""Analogy accuracy is over the questions whose words are all among the 30k most
frequent (gensim's convention), lowercased. gensim 4.4 on the same corpus: skip-gram
0.370 and 0.386 / WS353 0.637 and 0.642, CBOW 0.297 and 0.299 / 0.567 and 0.575 (two
sittings beside seqlab's on 2026-11-26; its threads make each run differ; see
docs/benchmarks.md).""")


def get_config(preset=None):
  del preset
  return _W2V.get_config('skipgram')


def get_sweep(preset=None):
  del preset
  return [{}, _CBOW]
