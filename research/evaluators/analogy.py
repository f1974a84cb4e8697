"""Word analogies (questions-words.txt): 3CosAdd and 3CosMul accuracy, per section.

Settings: restrict, the most frequent words searched (eval.analogy_restrict by
default).
"""
from research.evaluation import word_vectors as wv_eval
from research.evaluators import cached

NEEDS = 'vectors'


def evaluate(task, params, split, cache, restrict=None):
  del split
  if 'analogy' not in task.eval_sets:
    return {}
  wv = cached(cache, 'vectors', lambda: task.vectors(params))
  res = wv_eval.evaluate_analogies(wv, task.eval_sets['analogy'],
                                   restrict or task.config.eval.analogy_restrict)
  out = {'analogy/3cosadd': res['3cosadd'], 'analogy/3cosmul': res['3cosmul'],
         'analogy/answered': res['answered'], 'analogy/oov': res['oov']}
  for name, section in res['sections'].items():
    out[f'analogy/{name}/3cosadd'] = section['3cosadd']
  return out

