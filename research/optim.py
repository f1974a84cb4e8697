"""The optimizer factory: optax optimizers and learning-rate schedules by name."""
import jax
import jax.numpy as jnp
import optax

from research.errors import UserError

SCHEDULES = ('constant', 'cosine', 'linear', 'rsqrt', 'nanogpt', 'warmup_times_cosine')
OPTIMIZERS = ('adam', 'adamw', 'sgd')
DECAYED = ('all', 'weights')  # optimizer.weight_decay_on


def make_schedule(cfg, total_steps: int):
  lr, warmup = cfg.learning_rate, cfg.warmup_steps
  if cfg.schedule == 'warmup_times_cosine':
    # torch_gpt.py's (and many PyTorch scripts'): a ramp of (s + 1) / warmup times a cosine
    # over every step, down to final_lr_fraction; `cosine` starts its decay after the warmup.
    cosine = optax.cosine_decay_schedule(lr, max(1, total_steps), cfg.final_lr_fraction)
    return lambda s: jnp.minimum(1.0, (s + 1) / max(1, warmup)) * cosine(s)
  if cfg.schedule == 'nanogpt':
    # nanoGPT's get_lr (and torch_gpt.py's): lr (s + 1) / (warmup + 1) for the first
    # `warmup` steps, then a cosine from lr down to final_lr_fraction over the rest.
    ramp = lambda s: lr * (s + 1) / (warmup + 1)
    cosine = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup), cfg.final_lr_fraction)
    return lambda s: jnp.where(s < warmup, ramp(s), cosine(s - warmup))
  if cfg.schedule == 'constant':
    main = optax.constant_schedule(lr)
  elif cfg.schedule == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup), cfg.final_lr_fraction)
  elif cfg.schedule == 'linear':
    main = optax.linear_schedule(lr, lr * cfg.final_lr_fraction, max(1, total_steps - warmup))
  elif cfg.schedule == 'rsqrt':  # Vaswani et al. 2017, peaking at `lr` after warmup.
    main = lambda s: lr * jnp.sqrt(max(1, warmup) / jnp.maximum(s + warmup, 1))
  else:
    raise UserError(f'unknown optimizer.schedule {cfg.schedule!r}; use {", ".join(SCHEDULES)}')
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(cfg, total_steps: int):
  """(optax transformation, schedule) for config.optimizer."""
  schedule = make_schedule(cfg, total_steps)
  if cfg.weight_decay_on != 'all' and cfg.name != 'adamw':
    raise UserError(f'optimizer.weight_decay_on={cfg.weight_decay_on!r} needs '
                    f'optimizer.name=adamw (here {cfg.name!r}), the optimizer that decays')
  if cfg.name == 'adam':
    opt = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  elif cfg.name == 'adamw':
    if cfg.weight_decay_on not in DECAYED:
      raise UserError(f'unknown optimizer.weight_decay_on {cfg.weight_decay_on!r}; use '
                      + ', '.join(DECAYED))
    mask = None if cfg.weight_decay_on == 'all' else decays_weights
    opt = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                      mask=mask)
  elif cfg.name == 'sgd':
    opt = optax.sgd(schedule, momentum=cfg.momentum or None)
  else:
    raise UserError(f'unknown optimizer.name {cfg.name!r}; use {", ".join(OPTIMIZERS)}')
  if cfg.grad_clip_norm:
    opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), opt)
  return opt, schedule


def decays_weights(params):
  """True for the weights: every parameter but biases and layer-norm scales (GPT-2's
  and nanoGPT's rule, which decays the 2-D weights and embeddings)."""
  def weight(path, _):
    names = [p.key for p in path if isinstance(p, jax.tree_util.DictKey)]
    return not names or names[-1] not in ('bias', 'scale')
  return jax.tree_util.tree_map_with_path(weight, params)
