"""Kaggle's "Bag of Words Meets Bags of Popcorn" tutorial study, on the 25k IMDB
test reviews: a bag of words against word vectors (averaged, or as a bag of
k-means centroids), plus TF-IDF bigrams (Wang & Manning 2012's strong baseline)
and a neural classifier past the tutorial.

The five points are configs/popcorn.py's presets, written as overrides of the
tfidf preset; the three word-vector points share one word2vec run, trained on the
train + unlabeled reviews in WORKDIR/word2vec.

Run:  python launch.py --reproduce=popcorn   (5 points; resumable)
Writes runs/papers/popcorn/report.md (with roc.png, every method's ROC curve).
Expected on 2 CPU cores: 33 min 42 s in one go (word2vec 157 s, the linear
methods 14 s to 173 s each, the encoder 28.5 min); test accuracy as the presets
give it (configs/popcorn.py). The history of these runs is in docs/benchmarks.md.
"""
from research.config import overrides, shipped_config

_POPCORN = shipped_config('popcorn')
METHODS = ('bow', 'tfidf', 'avg_vectors', 'centroids', 'neural')


def _overrides(method):
  """The keys where `method`'s preset differs from the tfidf preset."""
  return overrides(_POPCORN.get_config('tfidf'), _POPCORN.get_config(method))


# The tutorial's own figures (random forests, Kaggle's public test split) and Wang & Manning.
_PAPER_ACCURACY = {'bow': 0.84, 'tfidf': 0.8916, 'avg_vectors': 0.83, 'centroids': 0.84,
                   'neural': None}

PAPER = dict(
    title="Bag of Words Meets Bags of Popcorn (Kaggle's word2vec tutorial)",
    authors='Kaggle tutorial (2014); Wang and Manning (2012) for TF-IDF bigrams', year=2014,
    where='the tutorial parts 1-3 (accuracy ~0.84 each); Wang & Manning Table 3 (SVM-bi)',
    results=[r for m in METHODS for r in (
        dict(label=m, point=_overrides(m), metric='test/accuracy', paper=_PAPER_ACCURACY[m]),
        dict(label=m, point=_overrides(m), metric='test/auc', paper=None),
        dict(label=m, point=_overrides(m), metric='test/f1', paper=None))],
    roc='roc.png',
    notes="""The tutorial's numbers are random forests scored on Kaggle's leaderboard split;
seqlab's are logistic regression (and a Transformer encoder) on the full 25k aclImdb test
set, trained on 22.5k of the 25k training reviews (2.5k held out for validation).
The tfidf paper number is Wang & Manning's linear SVM on uni+bigrams (SVM-bi, 89.16);
seqlab's is plain logistic regression on sublinear TF-IDF uni+bigrams.""")


def get_config(preset=None):
  del preset
  config = _POPCORN.get_config('tfidf')
  config.data.word2vec_dir = '../word2vec'  # one word2vec run for the sweep's three users.
  return config


def get_sweep(preset=None):
  del preset
  return [_overrides(m) for m in METHODS]
