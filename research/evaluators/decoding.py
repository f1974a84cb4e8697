"""Translation by decoding: exact match, token accuracy and truncated pairs."""
import numpy as np

from research.data.vocab import PAD

NEEDS = 'decoded'


def evaluate(task, params, split, cache):
  tokens, hyps = task.decoded(params, split, cache)
  ref, data = task.data.arrays[split]['tgt'], task.data.splits[split]
  mask = ref != PAD  # token accuracy over reference positions, the end of sequence included.
  return {'exact_match': float(np.mean([h == r for h, r in zip(hyps, data.targets)])),
          'token_accuracy': float(((tokens == ref) & mask).sum() / mask.sum()),
          'truncated': int(task.data.truncated[split])}
