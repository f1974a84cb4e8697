"""Throughput and model FLOP utilization: --mode=benchmark, and the training log's MFU.

MFU is the model's matmul FLOPs per second (every dot_general of the compiled
step's jaxpr, forward and backward, loop bodies times their trip count) over a
peak: the device's nominal dense peak for the compute dtype (PEAKS, the one
table of them), or on a CPU the measured rate of an [n, n] matmul in that dtype.
"""
import gzip
import json
import re
import resource
import time

import jax
import jax.extend  # pylint: disable=unused-import  (jax.extend.core for matmul_flops)
import jax.numpy as jnp
import numpy as np
from absl import logging

from research.data import pipeline
from research.data.vocab import PAD

# Nominal dense peaks in FLOP/s per chip, by a substring of jax's device_kind; the
# first match wins, so 'TPU v5 lite' (v5e) comes before 'TPU v5' (v5p). float32 on
# NVIDIA GPUs is TF32, the default precision of their float32 matmuls.
PEAKS = (
  ('H100', 'NVIDIA H100 SXM', {'bfloat16': 989e12, 'float32': 494.5e12}),
  ('H200', 'NVIDIA H200 SXM', {'bfloat16': 989e12, 'float32': 494.5e12}),
  ('A100', 'NVIDIA A100', {'bfloat16': 312e12, 'float32': 156e12}),
  ('TPU v4', 'TPU v4', {'bfloat16': 275e12}),
  ('TPU v5 lite', 'TPU v5e', {'bfloat16': 197e12}),
  ('TPU v5e', 'TPU v5e', {'bfloat16': 197e12}),
  ('TPU v5', 'TPU v5p', {'bfloat16': 459e12}),
)


def nominal_peak(device_kind: str, dtype: str):
  """(FLOP/s, name) of the chip's dense peak for `dtype`, or None if not in PEAKS."""
  for key, chip, peaks in PEAKS:
    if key in device_kind and dtype in peaks:
      return peaks[dtype], f'{chip} {dtype} dense peak, {peaks[dtype] / 1e12:g} TFLOP/s'
  return None


def peak_flops(device, dtype: str, matmul_size: int, measured=None, repeats: int = 5,
               chain: int = 8):
  """(FLOP/s, name): the nominal peak for the compute dtype where the table has
  one, else (a CPU, or a chip not in the table) the matmul rate, `measured` or
  measured now; None when neither is available (matmul_size 0 on such a device)."""
  nominal = nominal_peak(device.device_kind, dtype)
  if nominal is not None:
    return nominal
  if measured is None:
    if not matmul_size:
      return None
    measured = matmul_peak_flops(matmul_size, device, repeats, chain, dtype)
  return measured, f'measured {matmul_size}x{matmul_size} {dtype} matmul on {device.platform}'


def fused_attention_flops(eqn) -> float:
  """The matmuls of cuDNN's fused attention (jax.nn.dot_product_attention's 'cudnn'
  primitives, query [B, T, N, H] and key [B, S, N, H]): Q K^T and P V forward, twice
  that backward (its recomputed Q K^T not counted), half of it under a causal mask,
  whose masked blocks the kernel skips."""
  (b, t, n, h), s = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape[1]
  flops = 4.0 * b * n * t * s * h * (2 if '_bwd' in eqn.primitive.name else 1)
  causal = 'CAUSAL' in str(getattr(eqn.params.get('mask_type'), 'name', ''))
  return flops / 2 if causal else flops


def matmul_flops(jaxpr) -> float:
  """2 * M * N * K for every dot_general (and fused attention's matmuls), the forward
  and backward passes both, with loop bodies counted once per iteration (scan
  length). The model FLOPs of MFU."""
  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      (contract, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in contract])
      continue
    if eqn.primitive.name.startswith('dot_product_attention_'):
      total += fused_attention_flops(eqn)
      continue
    inner = []
    for value in eqn.params.values():
      for v in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(v, jax.extend.core.ClosedJaxpr):
          inner.append(v.jaxpr)
        elif isinstance(v, jax.extend.core.Jaxpr):
          inner.append(v)
    if inner:  # cond: the costliest branch; scan: every iteration; the rest: once.
      flops = max(matmul_flops(j) for j in inner)
      total += flops * eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else flops
  return total


def matmul_peak_flops(n: int, device, repeats: int = 5, chain: int = 8,
                      dtype: str = 'float32') -> float:
  """One device's matmul rate in `dtype` at the default precision: the best of
  `repeats` runs of `chain` dependent [n, n] x [n, n] products in one program (so
  dispatch does not count)."""
  x = jax.device_put(jnp.full((n, n), 1.0 / n, dtype), device)
  run = jax.jit(lambda a: jax.lax.fori_loop(0, chain, lambda i, y: y @ a, a))
  run(x).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    run(x).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n ** 3 * chain / best


class StepFlops:
  """Matmul FLOPs of a step function per batch shape, each shape traced once;
  None for a step that cannot be traced (pmap)."""

  def __init__(self, step_fn):
    self._step_fn, self._per_shape = step_fn, {}

  def __call__(self, state, batch):
    if not hasattr(self._step_fn, 'trace'):
      return None
    shape = tuple((x.shape, x.dtype) for x in jax.tree.leaves(batch))
    if shape not in self._per_shape:  # traced on shapes alone: nothing moves to a device.
      abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
      self._per_shape[shape] = matmul_flops(self._step_fn.trace(state, abstract).jaxpr.jaxpr)
    return self._per_shape[shape]


class Throughput:
  """Units (tokens, examples, ...) and matmul FLOPs of the steps since the last log
  line, as rates and MFU against the device's peak for the compute dtype."""

  def __init__(self, exp, step_fn):
    self.exp, self.flops, self.peak = exp, StepFlops(step_fn), False
    self.reset()

  def reset(self):
    self.units, self.total_flops = {}, 0.0

  def add(self, host_batch, state, batch):
    for k, v in self.exp.task.units(host_batch).items():
      self.units[k] = self.units.get(k, 0) + v
    flops = self.flops(state, batch)
    self.total_flops = None if flops is None or self.total_flops is None else (
        self.total_flops + flops)

  def rates(self, seconds: float) -> dict:
    out = {f'train/{per_second(k)}': v / seconds for k, v in self.units.items()}
    if self.peak is False:  # measured once, at the first log line (a CPU's matmul rate).
      self.peak = peak_flops(self.exp.runtime.mesh.local_devices[0],
                                       self.exp.compute_dtype,
                                       self.exp.config.bench.matmul_size, repeats=2,
                                       chain=4)
    if self.peak and self.total_flops:
      out['train/mfu'] = self.total_flops / self.exp.runtime.num_devices / seconds / self.peak[0]
    return out


def peak_rss_mb() -> float:
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def per_second(unit: str) -> str:
  """'tokens' -> 'tokens_per_second'; 'words_effective' -> 'words_per_second_effective'."""
  base, _, qualifier = unit.partition('_')
  return f'{base}_per_second' + (f'_{qualifier}' if qualifier else '')


def train_row(exp, state, step_fn, profile_dir: str = '', process_start: float | None = None) -> dict:
  """Times bench.steps train steps after bench.warmup_steps (the first of which
  compiles, timed apart as first_step_seconds) on the training loop's own path:
  batches made and placed by pipeline.Prefetch on its background thread, metrics
  left on the devices. Returns the JSON row of --mode=benchmark, with
  start_to_first_step_seconds (from process_start, the process's time.time() at
  its start, to the first step's dispatch: imports, data, the initial state and
  the first batch). With bench.profile_steps=N and a profile_dir, N more steps
  are traced there (jax.profiler, with a Perfetto trace; kernel_times reads it)."""
  config, runtime, task = exp.config, exp.runtime, exp.task
  warmup, steps = config.bench.warmup_steps, config.bench.steps
  profile = config.bench.profile_steps if profile_dir else 0
  units, hosts = {}, []
  with pipeline.Prefetch(task.train_batch, runtime.put_batch, 0, warmup + steps + profile,
                         scope=task.scope) as batches:
    t_first, dispatched = time.perf_counter(), time.time()
    for i in range(warmup + steps):
      if i == 1:  # before a slow compile ends in a timeout, the log says which part was slow.
        jax.block_until_ready(state)
        first_step = time.perf_counter() - t_first
        logging.info('first step in %.1f s (compilation included)', first_step)
      if i == warmup:
        jax.block_until_ready(state)
        t0 = time.perf_counter()
      batch, device_batch = batches.get(i)
      if i >= warmup:
        hosts.append(batch)
        for k, v in task.units(batch).items():
          units[k] = units.get(k, 0) + v
      state, metrics = step_fn(state, device_batch)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - t0
    if profile:
      jax.profiler.start_trace(profile_dir, create_perfetto_trace=True)
      for i in range(warmup + steps, warmup + steps + profile):
        state, metrics = step_fn(state, batches.get(i)[1])
      jax.block_until_ready((state, metrics))
      jax.profiler.stop_trace()
      logging.info('profiled %d steps into %s', profile, profile_dir)
  row = {
    'config': config.name,
    'devices': runtime.num_devices,
    'platform': jax.devices()[0].platform,
    'dtype': exp.compute_dtype,
    'steps': steps,
    'seconds': round(seconds, 4),
    'steps_per_second': round(steps / seconds, 3),
    'first_step_seconds': round(first_step, 2),
    **({'start_to_first_step_seconds': round(dispatched - process_start, 2)}
       if process_start else {}),
    **{per_second(k): round(v / seconds, 2) for k, v in units.items()},
  }
  counter = StepFlops(step_fn)
  flops = [counter(state, b) for b in hosts]
  device = runtime.mesh.local_devices[0]
  sig = lambda x: float(f'{x:.4g}')
  if None not in flops:
    achieved = sum(flops) / runtime.num_devices / seconds  # per device.
    row.update(step_gflops=sig(sum(flops) / steps / 1e9), achieved_gflops=sig(achieved / 1e9))
    size = config.bench.matmul_size
    measured = matmul_peak_flops(size, device, dtype=exp.compute_dtype) if size else None
    if measured:
      row.update(matmul_peak_gflops=sig(measured / 1e9), mfu_measured=sig(achieved / measured))
    peak = peak_flops(device, exp.compute_dtype, size, measured)
    if peak:
      row.update(peak_gflops=sig(peak[0] / 1e9), peak=peak[1], mfu=sig(achieved / peak[0]))
  # e.g. regression's fit_seconds and held-out R^2.
  row.update(task.benchmark_fields(runtime.whole(runtime.global_state(state).params), seconds,
                                   steps))
  row['peak_rss_mb'] = peak_rss_mb()
  row.update(device_memory_fields(device))
  row.update(device_kind=device.device_kind, jax=jax.__version__)
  return row


def device_memory_fields(device) -> dict:
  """{'peak_device_memory_mb': ...}: the allocator's high-water mark on an accelerator;
  {} where the runtime keeps no such count (a CPU)."""
  stats = device.memory_stats() or {}
  if 'peak_bytes_in_use' not in stats:
    return {}
  return {'peak_device_memory_mb': round(stats['peak_bytes_in_use'] / 2 ** 20, 1)}


def decode_row(exp, state, step: int) -> dict:
  """Sentences/s decoding the test split (eval.beam_size, model.kv_cache): a first
  pass compiles every batch shape; the second is timed."""
  config = exp.config
  src = exp.task.data.arrays['test']['src']
  exp.task.translate_ids(state.params, src)  # warm-up: compiles.
  t0 = time.perf_counter()
  tokens, _ = exp.task.translate_ids(state.params, src)
  seconds = time.perf_counter() - t0
  return {
    'config': config.name,
    'devices': exp.runtime.num_devices,
    'platform': jax.devices()[0].platform,
    'what': 'decode',
    'checkpoint_step': step,
    'beam_size': config.eval.beam_size,
    'kv_cache': config.model.get('kv_cache', None),  # only the Transformer caches keys.
    'steps': -(-len(src) // config.eval.batch_size),
    'seconds': round(seconds, 4),
    'examples_per_second': round(len(src) / seconds, 2),
    'tokens_per_second': round(int((tokens != PAD).sum()) / seconds, 2),
    'peak_rss_mb': peak_rss_mb(),
  }


# Kernel names of matrix products (cuBLAS, CUTLASS, Triton and XLA's gemm fusions)
# and of fused attention, for kernel_times' classes.
_GEMM = ('gemm', 'cublas', 'cutlass', 'xmma', 'nvjet', 'wgmma', 'matmul', 'dot')
_ATTENTION = ('cudnn', 'flash', 'fmha', 'attention')


def kernel_class(name: str) -> str:
  low = name.lower()
  if any(k in low for k in _ATTENTION):
    return 'attention'
  if any(k in low for k in _GEMM):
    return 'matmul'
  if 'memcpy' in low or 'memset' in low:
    return 'copy'
  return 'other'


def hlo_op_names(hlo_text: str) -> dict:
  """{kernel name: op_name} from an optimized HLO module's text (XLA_FLAGS=--xla_dump_to=
  DIR --xla_dump_hlo_as_text; *after_optimizations.txt): a GPU profile names each kernel
  by its fusion or custom call, '.' written '_', or by the fusion XLA deduplicated it
  into; op_name is the jax path of the op, e.g. 'jit(f)/jvp(Model)/layer_0/dense/add'.
  A kernel that several fusions share takes the first one's op_name."""
  names = {}
  for line in hlo_text.splitlines():
    m = re.match(r'\s*(?:ROOT )?%([\w.\-]+) = .*? (?:fusion|custom-call)\(', line)
    op = re.search(r'op_name="([^"]*)"', line)
    if not (m and op):
      continue
    shared = re.search(r'deduplicated_name="([^"]+)"', line)
    for name in (m.group(1), shared.group(1) if shared else None):
      if name:
        names.setdefault(name.replace('.', '_'), op.group(1))
  return names


def op_group(op_name: str) -> str:
  """'fwd self_attention.attend/out' for '.../jvp(Model)/encoder_2/.../attend/out/dot_general':
  the pass (forward, backward, or neither: the update) and the last two modules of the
  path, layer numbers folded, so that every layer's copy of an op sums together."""
  where = 'bwd' if 'transpose(' in op_name else 'fwd' if 'jvp(' in op_name else 'step'
  parts = [p for p in op_name.split('/')[1:-1]  # not the autodiff and jnp-internal wrappers.
           if not p.startswith(('jvp(', 'transpose(', 'jit('))]
  path = '/'.join(parts[-2:]) or op_name.rsplit('/', 1)[-1]
  return f'{where} {re.sub(r"_[0-9]+", "_N", path)}'


def kernel_times(trace_path: str, hlo_text: str = '') -> dict:
  """Device time by kernel in a jax.profiler Perfetto trace (perfetto_trace.json.gz):
  {'threads': {name: ms}, 'kernels': [(ms, count, class, name, hlo_op)], 'classes':
  {class: ms}}, over the device threads (a GPU's streams; else every thread). With the
  step's optimized HLO text, also 'groups': {op_group: ms} (hlo_op_names)."""
  with gzip.open(trace_path) as f:
    events = json.load(f)['traceEvents']
  process = {e['pid']: e['args']['name'] for e in events
             if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  thread = {(e['pid'], e['tid']): e['args']['name'] for e in events
            if e.get('ph') == 'M' and e.get('name') == 'thread_name'}
  on_device = lambda e: process.get(e['pid'], '').startswith('/device:')
  spans = [e for e in events if e.get('ph') == 'X' and 'dur' in e]
  if any(on_device(e) for e in spans):
    spans = [e for e in spans if on_device(e)]
  threads = {}
  for e in spans:
    key = f"{process.get(e['pid'], e['pid'])} {thread.get((e['pid'], e['tid']), e['tid'])}"
    threads[key] = threads.get(key, 0.0) + e['dur'] / 1e3
  # XLA's op and module lines repeat the streams' kernels: count the streams alone.
  streams = [e for e in spans if 'stream' in thread.get((e['pid'], e['tid']), '').lower()]
  kernels = {}
  for e in streams or spans:
    op = str(e.get('args', {}).get('hlo_op', ''))
    ms, count = kernels.get((e['name'], op), (0.0, 0))
    kernels[(e['name'], op)] = (ms + e['dur'] / 1e3, count + 1)
  rows = sorted(((ms, n, kernel_class(name), name, op) for (name, op), (ms, n) in kernels.items()),
                reverse=True)
  classes = {}
  for ms, _, cls, _, _ in rows:
    classes[cls] = classes.get(cls, 0.0) + ms
  out = {'threads': threads, 'kernels': rows, 'classes': classes}
  if hlo_text:
    ops, groups = hlo_op_names(hlo_text), {}
    for ms, _, cls, name, _ in rows:  # cuBLAS's and cuDNN's kernels carry their own names.
      group = op_group(ops[name]) if name in ops else f'{cls}: library kernels'
      groups[group] = groups.get(group, 0.0) + ms
    out['groups'] = groups
  return out
