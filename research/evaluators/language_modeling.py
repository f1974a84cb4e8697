"""A language model's loss over a split's windows: bits per character, perplexity."""
import math

NEEDS = 'log_loss'


def evaluate(task, params, split, cache):
  del cache
  e = task.config.eval
  limit = e.validation_tokens if split == 'validation' else e.test_tokens
  nats, count, chars = task.log_loss(params, split, limit)
  return {'bpc': float(nats / chars / math.log(2)), 'perplexity': float(math.exp(nats / count)),
          'nll_per_token': float(nats / count), 'tokens': int(count)}
