"""Binary classification metrics: accuracy, ROC and its area, F1, log loss.

Host-side numpy, on the labels and predicted probabilities of a split.
"""
import numpy as np


def roc_curve(labels, scores):
  """(false positive rate, true positive rate) over every threshold, ties merged."""
  order = np.argsort(-scores, kind='stable')
  y, s = labels[order] > 0.5, scores[order]
  last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each tied score.
  tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
  return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def classification_metrics(labels, p) -> dict:
  labels = labels > 0.5
  predicted = p > 0.5
  tp = np.sum(predicted & labels)
  fp, fn = np.sum(predicted & ~labels), np.sum(~predicted & labels)
  fpr, tpr = roc_curve(labels.astype(np.float32), p)
  eps = 1e-7
  log_loss = -np.mean(np.where(labels, np.log(np.maximum(p, eps)), np.log(np.maximum(1 - p, eps))))
  return {'accuracy': float(np.mean(predicted == labels)),
          'auc': float(np.trapezoid(tpr, fpr)),
          'f1': float(2 * tp / max(2 * tp + fp + fn, 1)),
          'log_loss': float(log_loss)}
