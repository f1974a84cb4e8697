"""PNG plots: attention alignments and training curves."""
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def _plain(text: str) -> str:
  """Text as written: matplotlib would read $...$ as math."""
  return text.replace('$', r'\$')


def attention_heatmap(weights, source_tokens, target_tokens, path, title=''):
  """weights [target, source]: the alignment picture of Bahdanau et al. 2014."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig, ax = plt.subplots(figsize=(max(4, 0.3 * len(source_tokens) + 1.5),
                                  max(3, 0.3 * len(target_tokens) + 1.5)))
  ax.imshow(weights, cmap='viridis', vmin=0.0, vmax=1.0, aspect='auto')
  ax.set_xticks(range(len(source_tokens)),
                [_plain(repr(t)[1:-1]) or ' ' for t in source_tokens], fontsize=8)
  ax.set_yticks(range(len(target_tokens)), [_plain(t) for t in target_tokens], fontsize=8)
  ax.set_xlabel('input')
  ax.set_ylabel('output')
  ax.set_title(_plain(title), fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def metric_curves(records: list[dict], path: str):
  """One panel per metric name found in metrics.jsonl records."""
  names = sorted({k for r in records for k, v in r.items()
                  if k != 'step' and isinstance(v, (int, float))
                  and k.split('/')[-1] in ('loss', 'exact_match', 'accuracy', 'bleu',
                                           'learning_rate', 'grad_norm')})
  if not names:
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
  for ax, name in zip(axes[0], names):
    pts = [(r['step'], r[name]) for r in records if isinstance(r.get(name), (int, float))]
    ax.plot(*zip(*pts), marker='.' if len(pts) < 30 else None)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel('step', fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
