"""Hugging Face checkpoints in and out: the LM as GPT-2, the Transformer as Marian.

Out: `python launch.py --config=configs/lm.py:... --workdir=DIR --mode=export
--export_dir=OUT` writes OUT/config.json (GPT2Config's keys, model_type gpt2,
GPT2LMHeadModel) and OUT/model.safetensors (written with safetensors' numpy API:
no torch needed), plus the run's tokenizer (docs/language_model.md).

In: `--config.init.from_hf=PATH` starts a fresh run from a local GPT-2 folder
(config.json, model.safetensors, and the tokenizer's vocab.json and merges.txt,
read by research/data/vocab.py with Hugging Face's `tokenizers`); every array's
shape is checked against the config's model before any is read.

The two models are the same function:
- seqlab's pre-LN blocks, learned positions and tied embeddings are GPT-2's;
  model.activation=gelu (GELU's tanh form) is GPT-2's gelu_new, gelu_exact its
  exact gelu;
- seqlab's per-head query, key and value kernels [d, H, d/H] become the columns
  of c_attn [d, 3d] (GPT-2's Conv1D keeps weights as [in, out]);
- seqlab scales the input embeddings by sqrt(d) and GPT-2 does not, so wte is
  sqrt(d) E, and the final layer norm's scale and bias are divided by sqrt(d),
  which keeps the tied output layer's logits LN(x) E^T the same; with
  model.init=gpt2 (unscaled embeddings) the arrays are GPT-2's as they are;
- the layer norms' epsilon is model.norm_epsilon (layer_norm_epsilon).

The post-LN Transformer with sinusoidal positions and one vocabulary shared by
the source, target and output embeddings is MarianMTModel (marian_tensors):
- Marian lays its sinusoids out as [sin | cos] halves, seqlab interleaves them
  (sin, cos, sin, ...); one permutation of the model dimension, applied to every
  array that reads or writes the residual stream (embeddings, layer norms, the
  attention and feed-forward kernels' model side), turns one layout into the
  other and leaves the function unchanged (layer norm does not see the order);
- seqlab's decoder starts from <s> (decoder_start_token_id 1), pads with id 0
  and ends with </s> (2);
- Marian's layer norms use epsilon 1e-5, fixed; a model trained with seqlab's
  default 1e-6 exports with that small difference (model.norm_epsilon=1e-5
  makes the two the same function).
"""
import json
import os

import numpy as np

from research.errors import UserError


# transformers' names for GELU's tanh form (GPT-2's), and for the exact one.
GELU_TANH = ('gelu_new', 'gelu_pytorch_tanh', 'gelu_fast')
GELU_EXACT = ('gelu', 'gelu_python')
HF_GELU = {'gelu': 'gelu_new', 'gelu_exact': 'gelu'}  # model.activation -> activation_function


def gpt2_tensors(params, num_layers: int, embed_scale: bool = True) -> dict:
  """{GPT-2 state-dict name: float32 array} from the LM's parameters (host arrays);
  embed_scale: the model multiplies its input embeddings by sqrt(d)."""
  p = _plain(params)
  table = p['embed']['embedding']
  scale = np.float32(np.sqrt(table.shape[1]) if embed_scale else 1.0)
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
                ff_dim: int, eos_id: int, norm_epsilon: float, activation: str = 'gelu') -> dict:
  """GPT2Config's keys for these shapes: no dropout, seqlab's GELU (model.activation) and
  epsilon."""
  return {'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2',
          'vocab_size': vocab_size, 'n_positions': context, 'n_embd': model_dim,
          'n_layer': num_layers, 'n_head': num_heads, 'n_inner': ff_dim,
          'activation_function': HF_GELU[activation], 'layer_norm_epsilon': norm_epsilon,
          'resid_pdrop': 0.0, 'embd_pdrop': 0.0, 'attn_pdrop': 0.0,
          'scale_attn_weights': True, 'tie_word_embeddings': True,
          'bos_token_id': eos_id, 'eos_token_id': eos_id, 'torch_dtype': 'float32'}


def write(out_dir: str, config: dict, tensors: dict) -> list[str]:
  """config.json and model.safetensors in out_dir; returns their paths."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  paths = write_files(out_dir, {'config.json': config}) + [
      os.path.join(out_dir, 'model.safetensors')]
  # Tied: transformers rebuilds lm_head from wte, so only wte is stored.
  save_file(tensors, paths[1], metadata={'format': 'pt'})
  return paths


def write_files(out_dir: str, files: dict) -> list[str]:
  """Each {name: content} into out_dir (a dict as JSON, str as text, bytes as they
  are); returns their paths."""
  paths = []
  for name, content in files.items():
    paths.append(os.path.join(out_dir, name))
    if isinstance(content, bytes):
      with open(paths[-1], 'wb') as f:
        f.write(content)
      continue
    with open(paths[-1], 'w', encoding='utf-8') as f:
      if isinstance(content, str):
        f.write(content)
      else:
        json.dump(content, f, ensure_ascii=False, indent=1)
  return paths


def marian_refusal(model) -> str:
  """Why a translation model config has no MarianMTModel counterpart ('' if it has)."""
  m = model
  if m.name != 'transformer':
    return (f'model.name={m.name!r} (a recurrent encoder-decoder) has no Hugging Face '
            'counterpart; the Transformer (model.name=transformer) exports to MarianMTModel')
  d, h = m.model_dim, max(m.num_heads, 1)
  reasons = [why for bad, why in [
      (m.pre_ln, 'model.pre_ln=True (Marian is post-LN)'),
      (m.positions != 'sinusoidal', f'model.positions={m.positions!r} (Marian\'s are sinusoidal)'),
      (m.share_embeddings != 'all', f'model.share_embeddings={m.share_embeddings!r} (Marian\'s '
       'export shares one vocabulary between source, target and output: all)'),
      ((m.qk_dim or d // h) != d // h or (m.v_dim or d // h) != d // h,
       'model.qk_dim or model.v_dim other than model_dim / num_heads'),
      (d % 2, f'an odd model.model_dim={d}')] if bad]
  if reasons:
    return ('this Transformer has no MarianMTModel counterpart: ' + '; '.join(reasons)
            + '. Presets that export: multi30k, base, big, bench_gpu, table3')
  return ''


def residual_order(d: int) -> np.ndarray:
  """Marian's model dimensions in seqlab's order: [sin | cos] from interleaved."""
  return np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)])


def marian_tensors(params, num_layers: int, num_decoder_layers: int) -> dict:
  """{MarianMTModel state-dict name: float32 array} from the Transformer's
  parameters (share_embeddings=all, post-LN, sinusoidal positions)."""
  p = _plain(params)
  table = p['tgt_embed']['embedding']
  d = table.shape[1]
  order = residual_order(d)

  def linear(kernel, bias, into_residual=False):  # torch's Linear: weight [out, in].
    k = kernel.reshape(-1, d) if into_residual else kernel.reshape(d, -1)
    k = k[:, order] if into_residual else k[order]
    b = bias.reshape(-1)[order] if into_residual else bias.reshape(-1)
    return k.T, b

  def attention(prefix, att, out):
    for ours, theirs in (('query', 'q_proj'), ('key', 'k_proj'), ('value', 'v_proj')):
      out[f'{prefix}.{theirs}.weight'], out[f'{prefix}.{theirs}.bias'] = linear(
          att[ours]['kernel'], att[ours]['bias'])
    out[f'{prefix}.out_proj.weight'], out[f'{prefix}.out_proj.bias'] = linear(
        att['out']['kernel'], att['out']['bias'], into_residual=True)

  def norm(prefix, ln, out):
    out[prefix + '.weight'], out[prefix + '.bias'] = ln['scale'][order], ln['bias'][order]

  def feed_forward(prefix, ff, out):
    out[prefix + 'fc1.weight'], out[prefix + 'fc1.bias'] = linear(ff['inner']['kernel'],
                                                                  ff['inner']['bias'])
    out[prefix + 'fc2.weight'], out[prefix + 'fc2.bias'] = linear(
        ff['outer']['kernel'], ff['outer']['bias'], into_residual=True)

  out = {'model.shared.weight': table[:, order],
         'final_logits_bias': np.zeros((1, table.shape[0]), np.float32)}
  for i in range(num_layers):
    layer, h = p[f'encoder_{i}'], f'model.encoder.layers.{i}.'
    attention(h + 'self_attn', layer['self_attention'], out)
    norm(h + 'self_attn_layer_norm', layer['norm1'], out)
    feed_forward(h, layer['feed_forward'], out)
    norm(h + 'final_layer_norm', layer['norm2'], out)
  for i in range(num_decoder_layers):
    layer, h = p[f'decoder_{i}'], f'model.decoder.layers.{i}.'
    attention(h + 'self_attn', layer['self_attention'], out)
    norm(h + 'self_attn_layer_norm', layer['norm1'], out)
    attention(h + 'encoder_attn', layer['cross_attention'], out)
    norm(h + 'encoder_attn_layer_norm', layer['norm2'], out)
    feed_forward(h, layer['feed_forward'], out)
    norm(h + 'final_layer_norm', layer['norm3'], out)
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def marian_config(vocab_size: int, model) -> dict:
  """MarianConfig's keys for a Transformer config's model block (no dropout)."""
  m = model
  layers = m.num_decoder_layers or m.num_layers
  return {'architectures': ['MarianMTModel'], 'model_type': 'marian',
          'vocab_size': vocab_size, 'decoder_vocab_size': vocab_size, 'd_model': m.model_dim,
          'encoder_layers': m.num_layers, 'decoder_layers': layers,
          'encoder_attention_heads': m.num_heads, 'decoder_attention_heads': m.num_heads,
          'encoder_ffn_dim': m.ff_dim, 'decoder_ffn_dim': m.ff_dim,
          'activation_function': 'relu', 'max_position_embeddings': m.max_len,
          'scale_embedding': True, 'share_encoder_decoder_embeddings': True,
          'tie_word_embeddings': True, 'dropout': 0.0, 'attention_dropout': 0.0,
          'activation_dropout': 0.0, 'pad_token_id': 0, 'bos_token_id': 1, 'eos_token_id': 2,
          'decoder_start_token_id': 1, 'is_encoder_decoder': True,
          'torch_dtype': 'float32'}


def bytes_to_unicode() -> dict:
  """GPT-2's byte-level alphabet: a printable character for each byte."""
  keep = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1))
          + list(range(ord('®'), ord('ÿ') + 1)))
  chars, extra = {}, 0
  for b in range(256):
    if b in keep:
      chars[b] = chr(b)
    else:
      chars[b] = chr(256 + extra)
      extra += 1
  return chars


def write_lm_tokenizer(out_dir: str, vocab) -> list[str]:
  """The files of a transformers tokenizer with the run's ids, where one exists: a
  Hugging Face tokenizer's tokenizer.json; for bytes, GPT-2's byte-level BPE with
  no merges (GPT2TokenizerFast), byte b as id 4 + b after <pad>, <s>, </s>, <unk>."""
  from research.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  if isinstance(vocab, vocab_lib.HuggingFaceVocab):
    end = vocab.tokenizer.id_to_token(vocab.eos_id)
    return write_files(out_dir, {
        'tokenizer.json': vocab.tokenizer.to_str(),
        'tokenizer_config.json': {'eos_token': end, 'bos_token': end, 'unk_token': end,
                                  'model_max_length': 1 << 20}})
  if isinstance(vocab, vocab_lib.ByteVocab):
    table = {s: i for i, s in enumerate(vocab_lib.SPECIALS)}
    table.update({c: len(vocab_lib.SPECIALS) + b for b, c in bytes_to_unicode().items()})
    return write_files(out_dir, {
        'vocab.json': table, 'merges.txt': '#version: 0.2\n',
        'tokenizer_config.json': {'tokenizer_class': 'GPT2Tokenizer', 'eos_token': '</s>',
                                  'bos_token': '<s>', 'unk_token': '<unk>', 'pad_token': '<pad>',
                                  'add_prefix_space': False, 'model_max_length': 1 << 20}})
  return []


def write_marian_tokenizer(out_dir: str, vocab, max_len: int) -> list[str]:
  """MarianTokenizer's files for a SentencePiece vocabulary whose ids are its
  pieces' (source.spm and target.spm, the same model; vocab.json; its config).
  seqlab's sources carry no </s>: tokenize them with add_special_tokens=False."""
  proto = vocab.sp.serialized_model_proto()
  return write_files(out_dir, {
      'source.spm': proto, 'target.spm': proto,
      'vocab.json': {vocab.sp.id_to_piece(i): i for i in range(len(vocab))},
      'tokenizer_config.json': {'tokenizer_class': 'MarianTokenizer', 'pad_token': '<pad>',
                                'eos_token': '</s>', 'unk_token': '<unk>',
                                'model_max_length': max_len}})


def marian_generation(max_len: int, beam_size: int) -> dict:
  """generation_config.json: seqlab's decoding (from <s>, never <pad> or <s>, at most
  max_len tokens, its beam width)."""
  return {'decoder_start_token_id': 1, 'bos_token_id': 1, 'eos_token_id': 2, 'pad_token_id': 0,
          'max_length': max_len + 1, 'num_beams': beam_size, 'suppress_tokens': [0, 1]}


def read_gpt2(folder: str, abstract, model, embed_scale: bool = True) -> dict:
  """The LM's parameters (nested dicts of numpy arrays shaped and typed as the leaves
  of `abstract`, the unboxed jax.eval_shape of its init) from a GPT-2 folder; `model`
  is the config's model block, embed_scale as gpt2_tensors'. The inverse of
  gpt2_tensors."""
  hf = _read_config(folder)
  if hf.get('model_type') != 'gpt2':
    raise UserError(f'{folder}/config.json: model_type {hf.get("model_type")!r}; init.from_hf '
                    'reads GPT-2 checkpoints (model_type gpt2), the architecture of '
                    "seqlab's language model")
  files = _weight_files(folder)
  shapes = {}
  for path, names in files.items():
    from safetensors import safe_open  # pylint: disable=g-import-not-at-top
    try:
      with safe_open(path, framework='np') as f:
        for name in names:
          shapes[name] = tuple(f.get_slice(name).get_shape())
    except Exception as e:  # pylint: disable=broad-except  (safetensors' own error types)
      raise UserError(f'{path}: not a readable safetensors file ({e})') from None
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
        h + 'mlp.c_fc.weight': ff['inner']['kernel'].shape,
        h + 'mlp.c_fc.bias': ff['inner']['bias'].shape,
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
  theirs = hf.get('activation_function', 'gelu_new')
  wanted = 'gelu' if theirs in GELU_TANH else 'gelu_exact' if theirs in GELU_EXACT else None
  if wanted is None:
    raise UserError(f'{folder}/config.json: activation_function {theirs!r}; seqlab\'s LM '
                    f'computes GELU in its tanh form ({", ".join(GELU_TANH)}: '
                    f'--config.model.activation=gelu) or exactly ({", ".join(GELU_EXACT)}: '
                    '--config.model.activation=gelu_exact)')
  if wanted != model.get('activation', 'gelu'):
    raise UserError(f'{folder}/config.json has activation_function={theirs}; set '
                    f'--config.model.activation={wanted}')
  if (not hf.get('tie_word_embeddings', True) or hf.get('scale_attn_by_inverse_layer_idx')
      or not hf.get('scale_attn_weights', True)):
    raise UserError(f'{folder}/config.json: untied output embeddings, or attention scores '
                    "scaled otherwise than by 1/sqrt(head size): not seqlab's language model")

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
  scale = np.float32(np.sqrt(d) if embed_scale else 1.0)
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
        'feed_forward': {'inner': {'kernel': t[h + 'mlp.c_fc.weight'],
                                   'bias': t[h + 'mlp.c_fc.bias']},
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
    try:
      with safe_open(single, framework='np') as f:
        return {single: list(f.keys())}
    except Exception as e:  # pylint: disable=broad-except  (safetensors' own error types)
      raise UserError(f'{single}: not a readable safetensors file ({e})') from None
  if os.path.isfile(index):
    try:
      with open(index, encoding='utf-8') as f:
        weight_map = dict(json.load(f)['weight_map'])
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise UserError(f'{index}: no weight_map in it ({e!r})') from None
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
