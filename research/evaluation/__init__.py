"""Evaluation shared by the tasks: metrics, diagnostics and scores.

Classification metrics, k-means, BLEU and chrF,
word-vector analogies and similarity, and regression diagnostics. Each module is
host-side (numpy, sacrebleu, scipy) or pure jax, and imports no task."""
