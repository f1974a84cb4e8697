"""A regression's fit on a split: MSE, RMSE, MAE, R^2 and adjusted R^2."""
import jax
from absl import logging

from research.evaluation import regression

NEEDS = 'split_rows'


def evaluate(task, params, split, cache):
  del cache
  data = task.split_rows(split)
  if data is None:
    return {}
  out = regression.fit_metrics(jax.device_get(task.predict_rows(params, data['x'])), data['y'],
                               data['mask'], len(task.exps))
  if out['r2'] is None:
    logging.warning('%s: R^2 is undefined, the target being constant over its %d row(s); '
                    'reported as null', split, int(data['mask'].sum()))
  return out
