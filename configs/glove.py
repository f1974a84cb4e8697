"""GloVe (Pennington et al. 2014) on a plain-text corpus.

Presets:
  glove  dim 100, symmetric window 15 with 1/d weighting, x_max 10, alpha 0.75,
         AdaGrad at 0.05 in rounds of 8,192 entries (65,536 a step), 15 passes,
         min_count 5 (the settings of the Stanford demo run used as the peer).
  tiny   the test-suite size; give it --config.data.path.
Expected on the 17M-word corpus (2 CPU cores): 515.1 s end to end (counting
16 s), 1.78x Stanford GloVe's 918 s; analogy 3CosAdd 0.4600 (Stanford: 0.461),
WS353 0.484. On one H200: 137.8 s, analogy 0.4600.
Every figure, with its date and commit: docs/benchmarks.md.

Run:  python launch.py --config=configs/glove.py --workdir=runs/glove
Data: as configs/word2vec.py (data.path, data.eval_dir, data.name=text8).
"""
from research.config import shipped_config

_WORD2VEC = shipped_config('word2vec')

PRESETS = ('glove',)


def get_config(preset: str = 'glove'):
  if preset not in PRESETS + ('tiny',):
    raise ValueError(f'unknown preset {preset!r} for configs/glove.py; use glove or tiny')
  c = _WORD2VEC.get_config('tiny' if preset == 'tiny' else 'skipgram')
  c.task = 'glove'
  for key in ('sample', 'segment', 'parallel_segments', 'update_from'):
    del c.data[key]
  c.data.window = 15
  c.data.symmetric = True
  c.data.epochs = 15              # passes over the co-occurrence entries.
  c.data.round = 8192             # entries whose updates land at once (a step takes several).
  c.data.cooccur_memory_mb = 0    # >0: counting spills sorted runs to disk past this (glove.c's -memory).

  c.model = type(c.model)()
  c.model.name = 'glove'
  c.model.dim = 100
  c.model.x_max = 10.0
  c.model.alpha = 0.75
  c.model.dropout = 0.0

  c.optimizer.schedule = 'constant'
  c.optimizer.learning_rate = 0.05  # AdaGrad's step (glove.c's eta).
  c.train.batch_size = 65536      # co-occurrence entries per step.
  if preset == 'tiny':
    c.data.window, c.data.epochs = 3, 3
    c.model.dim = 8
    c.train.batch_size = 64
    c.data.round = 16
  return c
