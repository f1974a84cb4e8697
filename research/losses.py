"""Losses the tasks share: softmax and logistic cross-entropies.

The softmax cross-entropy (with label smoothing) is over tokens, the logistic
one over examples. Each returns per-item values or masked sums;
the loop divides by the global weight."""
import functools

import jax
import jax.numpy as jnp

from research.data.vocab import PAD


def sequence_loss(logits, targets, label_smoothing=0.0):
  """Cross entropy summed over non-padding target tokens.

  Returns (loss_sum, token_count, metric sums); the loop divides by the global
  count, so any split of the batch over devices gives the same gradients.
  """
  mask = (targets != PAD).astype(jnp.float32)
  nll, target_margin = smoothed_cross_entropy(logits, targets, label_smoothing)
  correct = (target_margin >= 0).astype(jnp.float32)  # the target has the top logit.
  return (nll * mask).sum(), mask.sum(), {'token_accuracy': (correct * mask).sum()}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def smoothed_cross_entropy(logits, targets, label_smoothing):
  """Per token: ((1 - eps) * -log p(target) + eps * mean_v -log p(v), target logit - max logit).

  Why a hand-written gradient: the vocabulary-sized arrays dominate a
  Transformer step on CPU, and autodiff of log_softmax + take_along_axis makes
  several passes over them (a scatter, a broadcast, a transpose); here the
  backward pass is one fused softmax - smoothed one-hot, and no argmax is needed.
  """
  return _cross_entropy_fwd(logits, targets, label_smoothing)[0]


def _cross_entropy_fwd(logits, targets, eps):
  x = logits.astype(jnp.float32)
  top = x.max(-1)
  shifted = x - top[..., None]
  lse = jnp.log(jnp.exp(shifted).sum(-1))
  target_shifted = jnp.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]
  nll = lse - target_shifted
  if eps:
    nll = (1.0 - eps) * nll + eps * (lse - shifted.mean(-1))
  return (nll, target_shifted), (logits, targets, top + lse)


def _cross_entropy_bwd(eps, residuals, cotangents):
  logits, targets, log_z = residuals
  g = cotangents[0][..., None]  # the margin output only feeds a comparison.
  probs = jnp.exp(logits.astype(jnp.float32) - log_z[..., None])
  vocab = jax.lax.broadcasted_iota(targets.dtype, logits.shape, logits.ndim - 1)
  target = (1.0 - eps) * (vocab == targets[..., None]) + eps / logits.shape[-1]
  return (g * (probs - target)).astype(logits.dtype), None


smoothed_cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def logistic_loss(logits, labels):
  """Per-example logistic loss, log(1 + exp(-s z)) with s = +-1."""
  return jax.nn.softplus(-(2.0 * labels - 1.0) * logits)
