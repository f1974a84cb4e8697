"""Batch order as a pure function of (seed, step).

Step s of a run reads examples [s*B, (s+1)*B) of an endless stream made of one
seeded permutation of the training set per epoch. A resumed run therefore sees
exactly the batches an uninterrupted run would, with no iterator state to save.
"""
import concurrent.futures
import contextlib
import functools
import queue
import threading

import jax
import numpy as np

from research.errors import UserError


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


class EpochAhead:
  """fn(epoch) for step-indexed batches, with the next epoch computed on a
  worker thread once the current one is half done.

  An epoch's own data (word2vec's subsampled stream, GloVe's shuffle of its
  entries: seconds each) is then ready when training reaches it, instead of
  stalling the device at each epoch boundary.
  Starting at the half keeps a short run (`--mode=benchmark`) free of it. fn
  must be a pure function of the epoch; at most two epochs are held.
  """

  def __init__(self, fn, steps_per_epoch: int, total_steps: int):
    self._fn, self._per_epoch, self._total = fn, steps_per_epoch, total_steps
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='epoch-ahead')
    self._futures = {}

  def _start(self, epoch: int):
    if epoch not in self._futures:
      self._futures[epoch] = self._pool.submit(self._fn, epoch)

  def at(self, step: int):
    """(fn(epoch), index of the step within its epoch)."""
    epoch, index = divmod(step, self._per_epoch)
    for e in [e for e in self._futures if e < epoch]:
      self._futures.pop(e).cancel()
    self._start(epoch)
    if 2 * index >= self._per_epoch and (epoch + 1) * self._per_epoch < self._total:
      self._start(epoch + 1)
    return self._futures[epoch].result(), index


class Prefetch:
  """The batches of steps [start, stop), made (make(step): this process's host
  rows) and placed on the devices (place(host)) `depth` steps ahead of use on a
  background thread, inside scope() (the task's), so the host prepares while the
  devices compute. The first
  is made at once, on the caller's thread: whatever a task loads on first use
  loads there. get(step) returns (host rows, device batch) in step order;
  errors of make or place reach the caller there."""

  def __init__(self, make, place, start: int, stop: int, depth: int = 2,
               scope=contextlib.nullcontext):
    self._items = queue.Queue(depth)
    self._stop = threading.Event()
    self._next = start
    first = make(start) if start < stop else None
    self._first = (first, place(first)) if first is not None else None
    self._thread = threading.Thread(target=self._produce,
                                    args=(make, place, start + 1, stop, scope),
                                    daemon=True, name='prefetch')
    self._thread.start()

  def _produce(self, make, place, start, stop, scope):
    try:
      with scope():  # the task's (regression's float64), which is per thread.
        for step in range(start, stop):
          host = make(step)
          if not self._put((host, place(host))):
            return
    except BaseException as e:  # pylint: disable=broad-except
      self._put(e)

  def _put(self, item) -> bool:
    """Queues item, waiting for room; False once closed."""
    while not self._stop.is_set():
      try:
        self._items.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def get(self, step: int):
    if step != self._next:
      raise ValueError(f'Prefetch.get({step}): the next batch is step {self._next}')
    self._next += 1
    if self._first is not None:
      first, self._first = self._first, None
      return first
    item = self._items.get()
    if isinstance(item, BaseException):
      raise item
    return item

  def close(self):
    self._stop.set()
    self._thread.join(timeout=5)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Indices into the training set of global batch number `step`."""
  positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
  epochs = positions // num_examples
  out = np.empty(batch_size, dtype=np.int64)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = _epoch_permutation(seed, int(epoch), num_examples)[positions[sel] % num_examples]
  return out


def process_slice(batch_size: int) -> slice:
  """The rows of a global batch that this process feeds (multi-host)."""
  n, i = jax.process_count(), jax.process_index()
  per = batch_size // n
  return slice(i * per, (i + 1) * per)


@functools.lru_cache(maxsize=2)
def _bucketed_epoch(seed: int, epoch: int, lengths: tuple, batch_size: int, chunk: int):
  """The len(lengths) // batch_size batches of one epoch: shuffle, drop the
  remainder, sort chunks of `chunk` batches by length, cut into batches, and
  shuffle the batches."""
  rng = np.random.default_rng([seed, epoch, 1])
  per_epoch = len(lengths) // batch_size
  order = rng.permutation(len(lengths))[:per_epoch * batch_size]
  lengths = np.asarray(lengths)
  batches = []
  for start in range(0, len(order), batch_size * chunk):  # each part: whole batches.
    part = order[start:start + batch_size * chunk]
    part = part[np.argsort(lengths[part], kind='stable')]
    batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
  return [batches[i] for i in rng.permutation(len(batches))]


def bucketed_batch_indices(lengths, batch_size: int, seed: int, step: int, chunk: int = 50):
  """Like batch_indices, but each batch holds examples of similar length.

  Still a pure function of (seed, step): batch `step` is batch
  step % batches_per_epoch of epoch step // batches_per_epoch.
  """
  if not isinstance(lengths, tuple):  # callers on a hot path pass a tuple made once.
    lengths = tuple(int(n) for n in lengths)
  per_epoch = len(lengths) // batch_size
  if per_epoch == 0:
    raise UserError(f'the training set has {len(lengths)} examples, fewer than one batch '
                    f'of {batch_size}; lower train.batch_size')
  return _bucketed_epoch(seed, step // per_epoch, lengths, batch_size, chunk)[step % per_epoch]


def budget_rows(width: int, batch_tokens: int, multiple: int) -> int:
  """Rows of a batch padded to `width` within batch_tokens: a multiple of `multiple`."""
  return batch_tokens // width // multiple * multiple


@functools.lru_cache(maxsize=2)
def _token_budget_epoch(seed: int, epoch: int, widths: tuple, batch_tokens: int, multiple: int):
  """One epoch's batches: each bucket's examples shuffled and cut into batches of
  budget_rows (the remainder dropped), then all batches shuffled."""
  rng = np.random.default_rng([seed, epoch, 2])
  widths = np.asarray(widths)
  batches = []
  for width in np.unique(widths):
    members = np.flatnonzero(widths == width)
    members = members[rng.permutation(len(members))]
    rows = budget_rows(int(width), batch_tokens, multiple)
    batches += [members[i:i + rows] for i in range(0, len(members) - rows + 1, rows)]
  return [batches[i] for i in rng.permutation(len(batches))]


def token_budget_batch(widths: tuple, batch_tokens: int, multiple: int, seed: int, step: int):
  """Indices of batch `step` when batches hold about batch_tokens padded tokens
  (fairseq's --max-tokens): a pure function of (seed, step), as batch_indices.
  `widths` is each example's padded length (bucket_length), made once."""
  per_epoch = len(_token_budget_epoch(seed, 0, widths, batch_tokens, multiple))
  if per_epoch == 0:
    raise UserError(f'data.batch_tokens={batch_tokens} makes no whole batch of the '
                    f'{len(widths)} training examples; raise it or use train.batch_size')
  return _token_budget_epoch(seed, step // per_epoch, widths, batch_tokens, multiple)[
      step % per_epoch]


def bucket_length(length: int, boundaries) -> int:
  """The smallest boundary >= length (the last one if none is)."""
  for b in boundaries:
    if length <= b:
      return b
  return boundaries[-1]
