"""Config checks at the boundary, before any work.

Config checks at the boundary, before any work: each rule names a key, a test
and what would fit, and a failure is one UserError naming all three.

Tasks list their rules in their `validate` classmethod (research/tasks/); the
rules every config shares are COMMON. A key a config lacks is not checked.
"""
import numbers

from research import optim
from research.errors import UserError


def _number(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _integer(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def integer(low: int = 0):
  """An integer >= low."""
  return (lambda v: _integer(v) and v >= low), f'an integer >= {low}'


def number(low: float = 0.0, high: float | None = None, *, open_low=False, open_high=False):
  """A number in [low, high] (with open ends as asked); high None is unbounded."""
  def test(v):
    if not _number(v) or v != v:  # NaN fails every comparison.
      return False
    above = v > low if open_low else v >= low
    below = high is None or (v < high if open_high else v <= high)
    return above and below
  if high is None:
    fits = f'a number {">" if open_low else ">="} {low:g}'
  else:
    fits = (f'a number in {"(" if open_low else "["}{low:g}, {high:g}'
            f'{")" if open_high else "]"}')
  return test, fits


def one_of(*choices):
  return (lambda v: v in choices), 'one of ' + ', '.join(map(repr, choices))


PROBABILITY = number(0.0, 1.0, open_high=True)  # dropout rates and the like.
FRACTION = number(0.0, 1.0)

COMMON = [
    ('train.steps', integer(0)),
    ('train.batch_size', integer(0)),
    ('train.log_every', integer(1)),
    ('train.microbatches', integer(1)),
    ('eval.every', integer(1)),
    ('train.init_on', one_of('device', 'host')),
    ('bench.steps', integer(1)),
    ('bench.warmup_steps', integer(1)),
    ('bench.profile_steps', integer(0)),
    ('eval.batch_size', integer(1)),
    ('eval.num_samples', integer(0)),
    ('eval.average_last', integer(0)),
    ('checkpoint.every', integer(1)),
    ('checkpoint.keep', integer(1)),
    ('optimizer.name', one_of(*optim.OPTIMIZERS)),
    ('optimizer.schedule', one_of(*optim.SCHEDULES)),
    ('optimizer.learning_rate', number(0.0)),
    ('optimizer.warmup_steps', integer(0)),
    ('optimizer.b1', PROBABILITY),
    ('optimizer.b2', PROBABILITY),
    ('optimizer.eps', number(0.0, open_low=True)),
    ('optimizer.weight_decay', number(0.0)),
    ('optimizer.weight_decay_on', one_of(*optim.DECAYED)),
    ('optimizer.grad_clip_norm', number(0.0)),
    ('optimizer.momentum', PROBABILITY),
    ('optimizer.final_lr_fraction', FRACTION),
    ('model.dropout', PROBABILITY),
    ('model.attention_dropout', PROBABILITY),
    ('model.relu_dropout', PROBABILITY),
    ('model.label_smoothing', PROBABILITY),
]


def _get(config, key):
  node = config
  for part in key.split('.'):
    if not hasattr(node, 'keys') or part not in node:
      raise KeyError(key)
    node = node[part]
  return node


def check(config, rules):
  """Raises UserError at the first (key, (test, fits)) whose value fails its test."""
  for key, (test, fits) in rules:
    try:
      value = _get(config, key)
    except KeyError:
      continue
    if not test(value):
      raise UserError(f'{key}={value!r} is out of range: use {fits}')


def require(ok: bool, message: str):
  """A cross-key rule: message names the keys, their values and what would fit."""
  if not ok:
    raise UserError(message)
