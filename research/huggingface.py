"""Hugging Face checkpoints in and out: the language model as GPT-2.

Out: `python launch.py --config=configs/lm.py:... --workdir=DIR --mode=export
--export_dir=OUT` writes OUT/config.json (GPT2Config's keys, model_type gpt2,
GPT2LMHeadModel) and OUT/model.safetensors (written with safetensors' numpy API:
no torch needed), plus the run's tokenizer (docs/language_model.md).

In: `--config.init.from_hf=PATH` starts a fresh run from a local GPT-2 folder
(config.json, model.safetensors, and the tokenizer's vocab.json and merges.txt,
read by research/data/vocab.py with Hugging Face's `tokenizers`); every array's
shape is checked against the config's model before any is read.

The two models are the same function:
- seqlab's pre-LN blocks, learned positions, tanh-approximated GELU (flax's
  default: GPT-2's gelu_new) and tied embeddings are GPT-2's;
- seqlab's per-head query, key and value kernels [d, H, d/H] become the columns
  of c_attn [d, 3d] (GPT-2's Conv1D keeps weights as [in, out]);
- seqlab scales the input embeddings by sqrt(d) and GPT-2 does not, so wte is
  sqrt(d) E, and the final layer norm's scale and bias are divided by sqrt(d),
  which keeps the tied output layer's logits LN(x) E^T the same;
- the layer norms' epsilon is model.norm_epsilon (layer_norm_epsilon).
"""
import json
import os

import numpy as np

from research.errors import UserError


def gpt2_tensors(params, num_layers: int) -> dict:
  """{GPT-2 state-dict name: float32 array} from the LM's parameters (host arrays)."""
  p = _plain(params)
  table = p['embed']['embedding']
  scale = np.float32(np.sqrt(table.shape[1]))
  out = {'transformer.wte.weight': table * scale,
         'transformer.wpe.weight': p['position_embeddings'],
         'transformer.ln_f.weight': p['final_norm']['scale'] / scale,
         'transformer.ln_f.bias': p['final_norm']['bias'] / scale}
  for i in range(num_layers):
    b, h = p[f'block_{i}'], f'transformer.h.{i}.'
    att, ff = b['self_attention'], b['feed_forward']
    d = att['query']['kernel'].shape[0]
    out[h + 'attn.c_attn.weight'] = np.concatenate(
        [att[n]['kernel'].reshape(d, -1) for n in ('query', 'key', 'value')], axis=1)
    out[h + 'attn.c_attn.bias'] = np.concatenate(
        [att[n]['bias'].reshape(-1) for n in ('query', 'key', 'value')])
    out[h + 'attn.c_proj.weight'] = att['out']['kernel'].reshape(-1, d)
    out[h + 'attn.c_proj.bias'] = att['out']['bias']
    out[h + 'ln_1.weight'], out[h + 'ln_1.bias'] = b['norm1']['scale'], b['norm1']['bias']
    out[h + 'ln_2.weight'], out[h + 'ln_2.bias'] = b['norm2']['scale'], b['norm2']['bias']
    out[h + 'mlp.c_fc.weight'], out[h + 'mlp.c_fc.bias'] = ff['inner']['kernel'], ff['inner']['bias']
    out[h + 'mlp.c_proj.weight'] = ff['outer']['kernel']
    out[h + 'mlp.c_proj.bias'] = ff['outer']['bias']
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def gpt2_config(vocab_size: int, context: int, model_dim: int, num_layers: int, num_heads: int,
                ff_dim: int, eos_id: int, norm_epsilon: float) -> dict:
  """GPT2Config's keys for these shapes: no dropout, seqlab's GELU and epsilon."""
  return {'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2',
          'vocab_size': vocab_size, 'n_positions': context, 'n_embd': model_dim,
          'n_layer': num_layers, 'n_head': num_heads, 'n_inner': ff_dim,
          'activation_function': 'gelu_new', 'layer_norm_epsilon': norm_epsilon,
          'resid_pdrop': 0.0, 'embd_pdrop': 0.0, 'attn_pdrop': 0.0,
          'scale_attn_weights': True, 'tie_word_embeddings': True,
          'bos_token_id': eos_id, 'eos_token_id': eos_id, 'torch_dtype': 'float32'}


def write(out_dir: str, config: dict, tensors: dict) -> list[str]:
  """config.json and model.safetensors in out_dir; returns their paths."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, 'config.json'), os.path.join(out_dir, 'model.safetensors')]
  with open(paths[0], 'w', encoding='utf-8') as f:
    json.dump(config, f, indent=2)
  # Tied: transformers rebuilds lm_head from wte, so only wte is stored.
  save_file(tensors, paths[1], metadata={'format': 'pt'})
  return paths


# GPT-2's GELU is the tanh approximation under either name.
GELU_TANH = ('gelu_new', 'gelu_pytorch_tanh')


def read_gpt2(folder: str, abstract, model) -> dict:
  """The LM's parameters (nested dicts of numpy arrays shaped and typed as the leaves
  of `abstract`, the unboxed jax.eval_shape of its init) from a GPT-2 folder; `model`
  is the config's model block. The inverse of gpt2_tensors."""
  hf = _read_config(folder)
  if hf.get('model_type') != 'gpt2':
    raise UserError(f'{folder}/config.json: model_type {hf.get("model_type")!r}; init.from_hf '
                    'reads GPT-2 checkpoints (model_type gpt2), the architecture of '
                    "seqlab's language model")
  files = _weight_files(folder)
  shapes = {}
  for path, names in files.items():
    from safetensors import safe_open  # pylint: disable=g-import-not-at-top
    with safe_open(path, framework='np') as f:
      for name in names:
        shapes[name] = tuple(f.get_slice(name).get_shape())
  prefix = 'transformer.' if any(n.startswith('transformer.') for n in shapes) else ''
  p = abstract
  d = p['embed']['embedding'].shape[1]
  expected = {'wte.weight': p['embed']['embedding'].shape,
              'wpe.weight': p['position_embeddings'].shape}  # at least data.context rows.
  for i in range(model.num_layers):
    b, h = p[f'block_{i}'], f'h.{i}.'
    att, ff = b['self_attention'], b['feed_forward']
    qkv = sum(int(np.prod(att[n]['kernel'].shape[1:])) for n in ('query', 'key', 'value'))
    expected.update({
        h + 'ln_1.weight': (d,), h + 'ln_1.bias': (d,),
        h + 'attn.c_attn.weight': (d, qkv), h + 'attn.c_attn.bias': (qkv,),
        h + 'attn.c_proj.weight': (int(np.prod(att['out']['kernel'].shape[:-1])), d),
        h + 'attn.c_proj.bias': (d,), h + 'ln_2.weight': (d,), h + 'ln_2.bias': (d,),
        h + 'mlp.c_fc.weight': ff['inner']['kernel'].shape, h + 'mlp.c_fc.bias': ff['inner']['bias'].shape,
        h + 'mlp.c_proj.weight': ff['outer']['kernel'].shape, h + 'mlp.c_proj.bias': (d,)})
  expected.update({'ln_f.weight': (d,), 'ln_f.bias': (d,)})
  for name, shape in expected.items():  # the first array that disagrees, in GPT-2's order.
    found = shapes.get(prefix + name)
    if found is None:
      raise UserError(f'{folder}: no array {prefix + name}, which the config\'s model needs '
                      f'(model.num_layers={model.num_layers}; config.json has n_layer='
                      f'{hf.get("n_layer")})')
    if name == 'wpe.weight' and len(found) == 2 and found[1] == d and found[0] >= shape[0]:
      continue  # a longer context than data.context: its first positions are used.
    if tuple(found) != tuple(shape):
      raise UserError(f'{folder}: {prefix + name} has shape {tuple(found)}, the config\'s '
                      f'model needs {tuple(shape)} (model.model_dim={d}, model.ff_dim='
                      f'{model.ff_dim}, data.context, vocabulary {expected["wte.weight"][0]})')
  checks = [('n_layer', hf.get('n_layer'), model.num_layers, 'model.num_layers'),
            ('n_head', hf.get('n_head'), model.num_heads, 'model.num_heads'),
            ('layer_norm_epsilon', hf.get('layer_norm_epsilon', 1e-5), model.norm_epsilon,
             'model.norm_epsilon')]
  for key, theirs, ours, flag in checks:
    if theirs != ours:
      raise UserError(f'{folder}/config.json has {key}={theirs}; set --config.{flag}={theirs}')
  if hf.get('activation_function', 'gelu_new') not in GELU_TANH:
    raise UserError(f'{folder}/config.json: activation_function '
                    f'{hf.get("activation_function")!r}; seqlab\'s LM computes GELU\'s tanh '
                    f'approximation ({", ".join(GELU_TANH)})')
  if not hf.get('tie_word_embeddings', True) or hf.get('scale_attn_by_inverse_layer_idx'):
    raise UserError(f'{folder}/config.json: untied output embeddings or attention scaled by '
                    "layer: not seqlab's language model")

  t = {}
  for path, names in files.items():
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      loaded = load_file(path)
    except (TypeError, ValueError) as e:
      raise UserError(f'{path}: could not read its arrays with numpy ({e}); save them as '
                      'float32 or float16') from None
    t.update({n[len(prefix):]: v.astype(np.float32) for n, v in loaded.items()
              if n.startswith(prefix) and n[len(prefix):] in expected})
  scale = np.float32(np.sqrt(d))
  out = {'embed': {'embedding': t['wte.weight'] / scale},
         'position_embeddings': t['wpe.weight'][:p['position_embeddings'].shape[0]],
         'final_norm': {'scale': t['ln_f.weight'] * scale, 'bias': t['ln_f.bias'] * scale}}
  for i in range(model.num_layers):
    h = f'h.{i}.'
    q, k, v = np.split(t[h + 'attn.c_attn.weight'], 3, axis=1)
    qb, kb, vb = np.split(t[h + 'attn.c_attn.bias'], 3)
    out[f'block_{i}'] = {
        'self_attention': {'query': {'kernel': q, 'bias': qb}, 'key': {'kernel': k, 'bias': kb},
                           'value': {'kernel': v, 'bias': vb},
                           'out': {'kernel': t[h + 'attn.c_proj.weight'],
                                   'bias': t[h + 'attn.c_proj.bias']}},
        'feed_forward': {'inner': {'kernel': t[h + 'mlp.c_fc.weight'], 'bias': t[h + 'mlp.c_fc.bias']},
                         'outer': {'kernel': t[h + 'mlp.c_proj.weight'],
                                   'bias': t[h + 'mlp.c_proj.bias']}},
        'norm1': {'scale': t[h + 'ln_1.weight'], 'bias': t[h + 'ln_1.bias']},
        'norm2': {'scale': t[h + 'ln_2.weight'], 'bias': t[h + 'ln_2.bias']}}
  return _shaped(out, abstract)


def _shaped(tree, abstract):
  """tree's arrays reshaped and cast to the leaves of `abstract` (same nesting)."""
  if isinstance(abstract, dict) or hasattr(abstract, 'items'):
    if set(tree) != set(abstract):
      raise UserError(f'the GPT-2 import lacks {sorted(set(abstract) - set(tree))} of the '
                      'language model\'s parameters')
    return {k: _shaped(tree[k], v) for k, v in abstract.items()}
  return np.asarray(tree).reshape(abstract.shape).astype(abstract.dtype)


def _read_config(folder: str) -> dict:
  path = os.path.join(folder, 'config.json')
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserError(f'init.from_hf={folder}: no config.json there; give a Hugging Face '
                    'checkpoint folder (config.json, model.safetensors, vocab.json, '
                    'merges.txt)') from None
  except (OSError, ValueError) as e:
    raise UserError(f'{path}: unreadable ({e})') from None


def _weight_files(folder: str) -> dict:
  """{safetensors file: [array names]}: model.safetensors, or the files a sharded
  checkpoint's model.safetensors.index.json names."""
  single, index = (os.path.join(folder, 'model.safetensors'),
                   os.path.join(folder, 'model.safetensors.index.json'))
  if os.path.isfile(single):
    from safetensors import safe_open  # pylint: disable=g-import-not-at-top
    with safe_open(single, framework='np') as f:
      return {single: list(f.keys())}
  if os.path.isfile(index):
    with open(index, encoding='utf-8') as f:
      weight_map = json.load(f)['weight_map']
    files = {}
    for name, file in weight_map.items():
      files.setdefault(os.path.join(folder, file), []).append(name)
    return files
  raise UserError(f'{folder} holds no model.safetensors; save the checkpoint with '
                  'transformers\' save_pretrained (safetensors is its default)')


def _plain(tree):
  """Nested dicts of numpy arrays, whatever flax boxes the leaves in."""
  if isinstance(tree, dict) or hasattr(tree, 'items'):
    return {k: _plain(v) for k, v in tree.items()}
  value = getattr(tree, 'value', tree)  # flax's logical-axis boxes.
  if not hasattr(value, 'shape'):
    raise UserError(f'unexpected parameter leaf {type(tree).__name__} in an export')
  return np.asarray(value, np.float32)
