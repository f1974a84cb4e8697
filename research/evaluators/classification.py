"""Binary classification of a labeled split: accuracy, ROC AUC, F1 and log loss."""
import numpy as np

from research.evaluation import classification

NEEDS = 'probabilities_of'


def evaluate(task, params, split, cache):
  del cache
  labels = task.labels_of(split)
  if labels is None or np.any(labels < 0):  # no split, or a test set without labels.
    return {}
  return classification.classification_metrics(labels, task.probabilities_of(params, split))
