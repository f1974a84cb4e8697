"""Hugging Face checkpoints out: the language model as a GPT-2 folder transformers loads.

`python launch.py --config=configs/lm.py:... --workdir=DIR --mode=export
--export_dir=OUT` writes OUT/config.json (GPT2Config's keys, model_type gpt2,
GPT2LMHeadModel) and OUT/model.safetensors (written with safetensors' numpy API:
no torch needed), plus the run's tokenizer (docs/language_model.md).

The two models are the same function:
- seqlab's pre-LN blocks, learned positions, tanh-approximated GELU (flax's
  default: GPT-2's gelu_new) and tied embeddings are GPT-2's;
- seqlab's per-head query, key and value kernels [d, H, d/H] become the columns
  of c_attn [d, 3d] (GPT-2's Conv1D keeps weights as [in, out]);
- seqlab scales the input embeddings by sqrt(d) and GPT-2 does not, so wte is
  sqrt(d) E, and the final layer norm's scale and bias are divided by sqrt(d),
  which keeps the tied output layer's logits LN(x) E^T the same;
- flax's layer norm epsilon is 1e-6 (layer_norm_epsilon).
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
                ff_dim: int, eos_id: int) -> dict:
  """GPT2Config's keys for these shapes: no dropout, seqlab's GELU and epsilon."""
  return {'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2',
          'vocab_size': vocab_size, 'n_positions': context, 'n_embd': model_dim,
          'n_layer': num_layers, 'n_head': num_heads, 'n_inner': ff_dim,
          'activation_function': 'gelu_new', 'layer_norm_epsilon': 1e-6,
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


def _plain(tree):
  """Nested dicts of numpy arrays, whatever flax boxes the leaves in."""
  if isinstance(tree, dict) or hasattr(tree, 'items'):
    return {k: _plain(v) for k, v in tree.items()}
  value = getattr(tree, 'value', tree)  # flax's logical-axis boxes.
  if not hasattr(value, 'shape'):
    raise UserError(f'unexpected parameter leaf {type(tree).__name__} in an export')
  return np.asarray(value, np.float32)
