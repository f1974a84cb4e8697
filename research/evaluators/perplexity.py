"""Translation perplexity under teacher forcing: the dev PPL of Vaswani et al."""
NEEDS = 'perplexity'


def evaluate(task, params, split, cache):
  del cache
  return {'perplexity': task.perplexity(params, split)}
