"""The config schema every experiment shares, and helpers to check overrides.

Sweeps and tools address any experiment through the same keys: `seed`,
`data.*`, `model.*`, `optimizer.*`, `train.steps`, `train.batch_size`,
`eval.every`, `checkpoint.every`, `parallel`.

`--config.parallel=MODE` is short for `--config.parallel.mode=MODE`.
"""
import difflib
import importlib.util
import os

import ml_collections

from research.errors import UserError


def base_config() -> ml_collections.ConfigDict:
  """Returns the shared schema with defaults; experiment configs fill it in."""
  c = ml_collections.ConfigDict()
  c.name = ''                    # config name, filled by launch.py for reports.
  c.seed = 0                     # init, data order and dropout keys derive from it.
  c.task = 'translation'         # which research.tasks entry runs the experiment.

  c.parallel = ml_collections.ConfigDict()  # research/parallel.py.
  c.parallel.mode = 'mesh'       # mesh | fsdp | pmap (the legacy path).
  c.parallel.mesh_shape = ''     # '' (every device on 'data') or e.g. 'data=2,model=2'.
  c.parallel.fsdp_min_size = 1024  # fsdp: leaves with fewer elements stay replicated.

  c.data = ml_collections.ConfigDict()
  c.data.name = ''
  c.data.path = ''               # local copy of the dataset, for offline use.
  c.data.store_dir = ''          # prepared stores; '': $SEQLAB_CACHE/stores or ~/.cache/seqlab/stores.
  c.data.seed = 0                # fixes the dataset itself (e.g. splits).
  c.data.bucket_boundaries = ()  # sequence lengths to pad batches to; () pads to the max.

  c.model = ml_collections.ConfigDict()
  c.model.dropout = 0.0

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adam'      # adam | adamw | sgd
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = 'cosine'  # constant | cosine | linear | rsqrt | nanogpt | warmup_times_cosine
  c.optimizer.warmup_steps = 0
  c.optimizer.final_lr_fraction = 0.0
  c.optimizer.weight_decay = 0.0
  c.optimizer.weight_decay_on = 'all'  # adamw: all | weights (not biases or norm scales)
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.momentum = 0.9     # for sgd.
  c.optimizer.grad_clip_norm = 1.0  # 0 disables clipping.

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000
  c.train.batch_size = 128       # global batch, split over all devices.
  c.train.microbatches = 1       # gradient accumulation: k slices of the batch, one update.
  c.train.log_every = 50
  c.train.profile_steps = ''     # e.g. '100:105': a jax.profiler trace into tensorboard/.
  c.train.init_on = 'device'     # device | host: where the initial state is computed.

  c.eval = ml_collections.ConfigDict()
  c.eval.every = 500
  c.eval.batch_size = 512
  c.eval.num_samples = 5         # sample predictions printed at each eval.
  c.eval.average_last = 0        # >0: also evaluate the mean of the last K checkpoints.
  c.eval.evaluators = ()         # research/evaluators/ by name; (): the task's own list.

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 500
  c.checkpoint.keep = 3

  c.bench = ml_collections.ConfigDict()
  c.bench.warmup_steps = 5
  c.bench.steps = 50
  c.bench.matmul_size = 2048     # >0: also report MFU against an [n, n] f32 matmul's rate.
  c.bench.what = 'train'         # train | decode (the test split, with --workdir's checkpoint).
  c.bench.profile_steps = 0      # >0: a jax.profiler trace of that many more steps (--workdir).
  return c


def add_translation_keys(c: ml_collections.ConfigDict):
  """The keys the translation task reads beyond the shared schema, with their
  defaults: every translation config starts from them (configs/dates.py,
  configs/seq2seq.py, and through it configs/transformer.py)."""
  c.data.data_dir = ''           # where TFDS keeps prepared data ('' = its default).
  c.data.encoding_errors = 'strict'  # aligned files: strict | replace.
  c.data.vocab_size = 8000       # sentencepiece: the vocabulary's size (char ignores it).
  c.data.spm_model_type = 'bpe'  # sentencepiece: bpe | unigram.
  c.data.tokenizer_sample = 1_000_000  # training pairs the vocabularies learn from.
  c.data.shared_vocab = False    # one vocabulary for both sides.
  c.data.validation_split = 'validation'  # data.name=parallel: the files' name, e.g. newstest2013.
  c.data.test_split = 'test'
  c.data.batch_tokens = 0        # >0: batches of about this many padded tokens (per side).
  c.eval.bleu = True             # BLEU and chrF of the decoded split.
  c.eval.beam_size = 1           # 1 is greedy decoding.
  c.eval.length_penalty = 0.6    # GNMT alpha, for beam search.
  c.eval.length_buckets = ()     # BLEU by source words, e.g. (7, 10): 1-7, 8-10, 11+.


def add_precision_keys(model: ml_collections.ConfigDict):
  """The accelerator keys of a neural model: flax's compute and parameter dtypes,
  and rematerialization."""
  model.dtype = 'auto'           # auto (bfloat16 on GPU and TPU, float32 on CPU) | float32 | bfloat16
  model.param_dtype = 'float32'  # the master weights, the optimizer state and checkpoints.
  model.remat = False            # recompute each layer's activations in the backward pass.


ALIASES = {'parallel': 'parallel.mode'}


def resolve_alias(key: str) -> str:
  """'parallel' -> 'parallel.mode'; any other key as it is."""
  return ALIASES.get(key, key)


def load_config_module(path: str):
  """Imports a config file as a module."""
  if not os.path.isfile(path):
    configs_dir = os.path.dirname(path) or 'configs'
    available = sorted(
        os.path.join(configs_dir, f) for f in os.listdir(configs_dir)
        if f.endswith('.py') and not f.startswith('_')
    ) if os.path.isdir(configs_dir) else []
    raise UserError(
        f'config file {path!r} not found; available: {", ".join(available) or "none"}')
  spec = importlib.util.spec_from_file_location('_seqlab_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def shipped_config(name: str):
  """The module of configs/NAME.py (NAME may be 'papers/...'), for a config that
  builds on another, wherever the working directory is."""
  return load_config_module(os.path.join(CONFIGS_DIR, name + '.py'))


def load_config_file(path: str, preset: str | None):
  """Returns get_config(preset) of the config file at `path`."""
  module = load_config_module(path)
  return module.get_config(preset) if preset else module.get_config()


def load_sweep(path: str, preset: str | None) -> list[dict]:
  """Returns get_sweep(preset) of a config file, checking every key exists."""
  module = load_config_module(path)
  if not hasattr(module, 'get_sweep'):
    raise UserError(f'{path} defines no get_sweep(); nothing to sweep')
  points = module.get_sweep(preset) if preset else module.get_sweep()
  config = module.get_config(preset) if preset else module.get_config()
  keys = set(flat_keys(config))
  for point in points:
    for key in point:
      if resolve_alias(key) not in keys:
        raise UserError(f'sweep point {point}: ' + unknown_key_message(key, config))
  return points


def flat_items(config, prefix='') -> dict:
  """{'section.key': value} over every leaf of the config."""
  items = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if isinstance(value, ml_collections.ConfigDict):
      items.update(flat_items(value, name + '.'))
    else:
      items[name] = value
  return items


def flat_keys(config) -> list[str]:
  return list(flat_items(config))


def overrides(base, other) -> dict:
  """{'section.key': value} where `other` differs from `base` (the name aside): a
  preset written as a sweep point over another, as paper configs do."""
  base = flat_items(base)
  return {k: v for k, v in flat_items(other).items() if base.get(k) != v and k != 'name'}


def unknown_key_message(key: str, config) -> str:
  valid = flat_keys(config)
  close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
  if not close:  # fall back to the keys of the same section.
    section = key.rsplit('.', 1)[0] + '.' if '.' in key else ''
    close = [k for k in valid if k.startswith(section)][:6] if section else []
  hint = f'; did you mean {", ".join(close)}?' if close else ''
  return f'unknown config key {key!r}{hint}'


def to_dict(config) -> dict:
  return config.to_dict() if hasattr(config, 'to_dict') else dict(config)
