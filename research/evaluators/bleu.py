"""BLEU (cased and lowercased) and chrF of the decoded split, and BLEU by source length.

Settings: buckets, the source-length edges (eval.length_buckets by default).
With eval.bleu=False it gives nothing.
"""
from research.evaluation import bleu

NEEDS = 'decoded'


def evaluate(task, params, split, cache, buckets=None):
  if not task.config.eval.bleu:
    return {}
  _, hyps = task.decoded(params, split, cache)
  data = task.data.splits[split]
  out = bleu.corpus_scores(hyps, data.targets)
  edges = task.config.eval.length_buckets if buckets is None else buckets
  if edges:
    out.update(bleu.by_source_length(hyps, data.targets, data.sources, edges))
  return out
