"""Word similarity: Spearman's rho of cosines against human scores (WordSim-353, SimLex-999).

Settings: sets, the evaluation sets by name (both by default).
"""
from research.evaluation import word_vectors as wv_eval
from research.evaluators import cached

NEEDS = 'vectors'


def evaluate(task, params, split, cache, sets=('ws353', 'simlex999')):
  del split
  out = {}
  for name in sets:
    if name in task.eval_sets:
      wv = cached(cache, 'vectors', lambda: task.vectors(params))
      res = wv_eval.evaluate_similarity(wv, task.eval_sets[name])
      out[f'similarity/{name}'] = res['spearman']
      out[f'similarity/{name}_oov'] = res['oov']
  return out
