"""PNG plots: attention alignments and training curves."""
import os

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from research.evaluation import classification  # noqa: E402


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


def bucket_curves(series: dict, prefix: str, path: str, xlabel: str, ylabel: str, title=''):
  """One line per run over the buckets named `<prefix><lo>-<hi>` / `<prefix><lo>+`:
  e.g. BLEU by source length, one line per model (Bahdanau et al. 2014, Figure 2).
  `series` maps a run's label to its results dict."""
  def lower_end(key):
    return int(key[len(prefix):].split('-')[0].rstrip('+'))
  buckets = sorted({k for r in series.values() for k in r if k.startswith(prefix)}, key=lower_end)
  if not buckets:
    return None
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for label, results in series.items():
    pts = [(i, results[k]) for i, k in enumerate(buckets) if k in results]
    if pts:
      ax.plot(*zip(*pts), marker='o', label=_plain(label))
  ax.set_xticks(range(len(buckets)), [k[len(prefix):] for k in buckets])
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(_plain(title), fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def attention_heads(weights, source_tokens, target_tokens, path, title=''):
  """weights [H, T, S]: one panel per head, as in Vaswani et al. 2017, Figures 3-5."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  heads = weights.shape[0]
  cols = min(heads, 4)
  rows = -(-heads // cols)
  size = (max(2.5, 0.22 * len(source_tokens) + 1), max(2.5, 0.22 * len(target_tokens) + 1))
  fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
  for h, ax in enumerate(axes.flat):
    if h >= heads:
      ax.axis('off')
      continue
    ax.imshow(weights[h], cmap='viridis', vmin=0.0, vmax=1.0, aspect='auto')
    ax.set_xticks(range(len(source_tokens)), [_plain(t) for t in source_tokens], fontsize=6,
                  rotation=90)
    ax.set_yticks(range(len(target_tokens)), [_plain(t) for t in target_tokens], fontsize=6)
    ax.set_title(f'head {h}', fontsize=8)
  fig.suptitle(_plain(title), fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def word_pairs_pca(vectors: dict, groups: dict, path: str, title=''):
  """One panel per group of (a, b) word pairs, e.g. countries and capitals: the
  words' 2-D PCA projection (of that group's vectors), each pair joined by a line
  (Mikolov et al. 2013b, Figure 2). Pairs with an unknown word are left out."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  panels = {name: [(a, b) for a, b in pairs if a in vectors and b in vectors]
            for name, pairs in groups.items()}
  panels = {name: pairs for name, pairs in panels.items() if pairs}
  if not panels:
    return None
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
  for ax, (name, pairs) in zip(axes.flat, panels.items()):
    words = [w for pair in pairs for w in pair]
    x = np.stack([vectors[w] for w in words]).astype(np.float64)
    x -= x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T if len(vt) >= 2 else np.pad(x @ vt.T, ((0, 0), (0, 1)))
    for i in range(0, len(words), 2):
      ax.plot(xy[i:i + 2, 0], xy[i:i + 2, 1], color='0.7', lw=0.8, zorder=1)
    ax.scatter(xy[0::2, 0], xy[0::2, 1], s=14, c='tab:blue', zorder=2)
    ax.scatter(xy[1::2, 0], xy[1::2, 1], s=14, c='tab:red', zorder=2)
    for (px, py), w in zip(xy, words):
      ax.annotate(_plain(w), (px, py), fontsize=7, xytext=(2, 2), textcoords='offset points')
    ax.set_title(_plain(name), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(_plain(title), fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def regression_diagnostics(fitted, resid, vif: dict, path: str, title='', verdicts=None,
                           max_points=20000):
  """One panel of the residual plots: residuals vs fitted (linearity), normal Q-Q
  (normality), scale-location (homoscedasticity), the error histogram, and the
  VIF of each column (multicollinearity)."""
  from scipy import stats
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fitted, resid = np.asarray(fitted), np.asarray(resid)
  if len(resid) > max_points:  # a fixed subsample keeps big fits readable.
    keep = np.random.default_rng(0).choice(len(resid), max_points, replace=False)
    fitted, resid = fitted[keep], resid[keep]
  std = resid / (resid.std() or 1.0)
  fig, axes = plt.subplots(2, 3, figsize=(12, 7))
  a = axes[0, 0]
  a.scatter(fitted, resid, s=4, alpha=0.4)
  a.axhline(0, color='k', lw=0.8)
  a.set(title='residuals vs fitted (linearity)', xlabel='fitted', ylabel='residual')
  a = axes[0, 1]
  (osm, osr), (slope, intercept, _) = stats.probplot(std)
  a.scatter(osm, osr, s=4, alpha=0.4)
  a.plot(osm, slope * osm + intercept, color='r', lw=1)
  a.set(title='normal Q-Q (normality)', xlabel='theoretical quantile', ylabel='standardized residual')
  a = axes[0, 2]
  a.scatter(fitted, np.sqrt(np.abs(std)), s=4, alpha=0.4)
  a.set(title='scale-location (homoscedasticity)', xlabel='fitted', ylabel='sqrt |standardized residual|')
  a = axes[1, 0]
  a.hist(resid, bins=int(np.clip(len(resid) // 5, 5, 50)), density=True, alpha=0.7)
  grid = np.linspace(resid.min(), resid.max(), 200)
  a.plot(grid, stats.norm.pdf(grid, resid.mean(), resid.std() or 1.0), color='r', lw=1)
  a.set(title='error distribution', xlabel='residual')
  a = axes[1, 1]
  names = list(vif)[:30]
  a.barh(range(len(names)), [vif[n] for n in names])
  a.set_yticks(range(len(names)), [_plain(n) for n in names], fontsize=7)
  a.axvline(5, color='orange', lw=0.8)
  a.axvline(10, color='r', lw=0.8)
  a.set(title='VIF (multicollinearity)', xscale='log')
  a = axes[1, 2]
  a.axis('off')
  if verdicts:  # the tests' plain-word verdicts beside the pictures.
    import textwrap
    text = '\n\n'.join(textwrap.fill(f'{k}: {v}', 40) for k, v in verdicts.items())
    a.text(0, 1, _plain(text), va='top', fontsize=8, family='monospace')
  fig.suptitle(_plain(title), fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def regularization_path(alphas, coefs, names, path: str, cv_mse=None, chosen=None, title=''):
  """Each coefficient against alpha (log scale), and the cross-validated MSE when given."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  panels = 2 if cv_mse is not None and len(cv_mse) else 1
  fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
  a = axes[0, 0]
  if len(coefs) and np.any(coefs):
    a.plot(alphas, coefs)
    a.set(xscale='log', xlabel='alpha', ylabel='coefficient', title='regularization path')
    if len(names) <= 10:
      a.legend([_plain(n) for n in names], fontsize=7)
  if panels == 2:
    a = axes[0, 1]
    a.plot(alphas, cv_mse, marker='.')
    a.set(xscale='log', xlabel='alpha', ylabel='mean CV MSE', title='cross-validation')
  for a in axes[0]:
    if chosen is not None:
      a.axvline(chosen, color='k', lw=0.8, ls='--')
  fig.suptitle(_plain(title), fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def roc_curves(series: dict, path: str, title='ROC on the test reviews'):
  """One ROC curve per method: series {name: (labels, scores)}, AUC in the legend."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig, ax = plt.subplots(figsize=(5.5, 5))
  for name, (labels, scores) in series.items():
    fpr, tpr = classification.roc_curve(np.asarray(labels), np.asarray(scores))
    ax.plot(fpr, tpr, label=f'{_plain(name)} (AUC {np.trapezoid(tpr, fpr):.3f})')
  ax.plot([0, 1], [0, 1], color='0.7', linestyle=':')
  ax.set_xlabel('false positive rate')
  ax.set_ylabel('true positive rate')
  ax.set_title(_plain(title))
  ax.legend(loc='lower right', fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
