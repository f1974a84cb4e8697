"""Prepared token stores: corpora tokenized once into flat arrays on disk.

Prepared token stores: a text corpus tokenized once into flat arrays on disk,
then read by index by every run and every process, at any corpus size.

A store is a folder (nanoGPT's prepare.py writes one flat array of ids; levanter's
cache adds the offsets of each document and a ledger of what is complete):

  tokens.bin     every token id, documents back to back, each ended by </s>
                 (the smallest unsigned dtype that holds the vocabulary)
  documents.bin  int64 [D + 1, 2]: each document's first token and first
                 character, then the totals (bits per character need the latter)
  tokenizer/     the tokenizer (research.data.vocab.save), trained here for
                 char, word and SentencePiece
  meta.json      written last: the format, the tokenizer's settings and
                 fingerprint, the source's fingerprint, counts, and every other
                 file's size, modification time and a digest of sampled blocks

It lives under the store root (data.store_dir, else $SEQLAB_CACHE/stores, else
~/.cache/seqlab/stores) in a folder named by the source's fingerprint (its
files' paths, sizes and modification times) and the tokenizer's settings: a
changed source or other settings get another store, never a mixed one.

Preparation streams the source in bounded memory (one chunk of text at a time,
read and decompressed on a second thread; SentencePiece encodes on every core),
logs its progress with rate and ETA, and writes into a temporary folder that is
renamed into place when complete: a preparation that is killed or fails (a full
disk included) leaves nothing a later run trusts, and running it again finishes
the job. A store that was cut short or changed after it was prepared fails its
size and digest checks and is prepared again. One process prepares a store at a
time (a lock file); the others wait, then read it.

Reads never map the file: TokenFile.windows reads each row with one pread, so a
process's memory does not grow with the corpus or with the rows it has read.
"""
import dataclasses
import functools
import hashlib
import json
import os
import queue
import re
import shutil
import socket
import threading
import time

import numpy as np
from absl import logging

from research.data import preparing, sources
from research.data import vocab as vocab_lib
from research.errors import UserError

FORMAT = 1
TOKENIZERS = ('char', 'byte', 'word', 'sentencepiece', 'huggingface')
SAMPLE_CHARS = 10_000_000  # SentencePiece learns from the corpus's first 10M characters.
CACHE_ENV = 'SEQLAB_CACHE'


def root(store_dir: str = '') -> str:
  """Where stores live: data.store_dir, else $SEQLAB_CACHE/stores, else
  ~/.cache/seqlab/stores."""
  if store_dir:
    return store_dir
  cache = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser('~'), '.cache', 'seqlab')
  return os.path.join(cache, 'stores')


@dataclasses.dataclass(frozen=True)
class Spec:
  """What a store is made from: the source and the tokenizer's settings. `base` is
  the folder of a tokenizer to encode with instead of learning one (the later
  corpora of a mixture use the first one's)."""
  path: str
  tokenizer: str = 'char'
  vocab_size: int = 0           # word and SentencePiece.
  text_field: str = 'text'      # JSON lines.
  encoding_errors: str = 'strict'
  base: str = ''

  def files(self) -> list[str]:
    return sources.files(self.path, sources.TEXT_SUFFIXES + sources.JSONL_SUFFIXES)

  def settings(self) -> dict:
    """The tokenizer's part of the key (a base tokenizer by its contents)."""
    out = {'tokenizer': self.tokenizer, 'text_field': self.text_field,
           'encoding_errors': self.encoding_errors, 'format': FORMAT}
    if self.tokenizer in ('word', 'sentencepiece') and not self.base:
      out['vocab_size'] = self.vocab_size
    if self.base:
      out['base'] = self._base_fingerprint
    return out

  @functools.cached_property
  def _base_fingerprint(self) -> str:
    # Read once per spec: a large BPE is slow to load.
    return vocab_lib.fingerprint(vocab_lib.load(self.base))

  def folder(self) -> str:
    """The store's folder name: the source's name and fingerprint, the settings'."""
    return folder_name(os.path.basename(self.path.rstrip('/*')) or 'corpus',
                       sources.fingerprint(self.files()), self.tokenizer, self.settings())

  def build(self, tmp: str, progress: bool) -> dict:
    return _build(self, tmp, progress)

  def open(self, path: str) -> 'Store':
    return Store(path)


def folder_name(name: str, fingerprint: str, tokenizer: str, settings: dict) -> str:
  """A store's folder: the source's name and fingerprint, and a digest of the settings."""
  name = re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:40]
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
  return f'{name}-{fingerprint[:12]}-{tokenizer}-{digest[:12]}'


class Damaged(Exception):
  """A store that is unfinished, cut short or changed since it was prepared."""


class TokenFile:
  """Tokens [lo, hi) of a store's tokens.bin, read by position with pread."""

  def __init__(self, path: str, dtype, lo: int = 0, hi: int | None = None):
    self.path, self.dtype = path, np.dtype(dtype)
    self._fd = os.open(path, os.O_RDONLY)
    size = os.fstat(self._fd).st_size // self.dtype.itemsize
    self.lo, self.hi = lo, size if hi is None else hi

  def __len__(self):
    return self.hi - self.lo

  def __del__(self):
    if getattr(self, '_fd', None) is not None:
      os.close(self._fd)

  def part(self, lo: int, hi: int) -> 'TokenFile':
    """Tokens [lo, hi) of this one, sharing nothing but the path."""
    return TokenFile(self.path, self.dtype, self.lo + lo, self.lo + hi)

  def read(self, lo: int, hi: int) -> np.ndarray:
    n, size = hi - lo, self.dtype.itemsize
    raw = os.pread(self._fd, n * size, (self.lo + lo) * size)
    if len(raw) != n * size:
      raise UserError(f'{self.path} ended early: it was cut short after it was checked')
    return np.frombuffer(raw, self.dtype)

  def windows(self, starts, length: int) -> np.ndarray:
    """[len(starts), length] int32: the tokens from each start."""
    out = np.empty((len(starts), length), np.int32)
    for row, start in enumerate(starts):
      out[row] = self.read(int(start), int(start) + length)
    return out


class Tokens:
  """An in-memory array with TokenFile's reads (random data, tests)."""

  def __init__(self, array):
    self.array = np.asarray(array)

  def __len__(self):
    return len(self.array)

  def part(self, lo: int, hi: int) -> 'Tokens':
    return Tokens(self.array[lo:hi])

  def read(self, lo: int, hi: int) -> np.ndarray:
    return self.array[lo:hi]

  def windows(self, starts, length: int) -> np.ndarray:
    starts = np.asarray(starts, np.int64)
    return self.array[starts[:, None] + np.arange(length)].astype(np.int32)


class Store:
  """An open, checked store: vocab, tokens (a TokenFile), documents, meta."""

  def __init__(self, path: str):
    self.path = path
    self.meta = check(path)
    self.vocab = vocab_lib.load(os.path.join(path, 'tokenizer'))
    self.tokens = TokenFile(os.path.join(path, 'tokens.bin'), self.meta['dtype'])
    self.documents = np.memmap(os.path.join(path, 'documents.bin'), np.int64, 'r').reshape(-1, 2)

  def __len__(self):
    return len(self.tokens)

  def characters(self, lo: int, hi: int) -> float:
    """The characters that tokens [lo, hi) cover, counted by document and shared
    evenly among a document's tokens where the range cuts one."""
    return self._chars_before(hi) - self._chars_before(lo)

  def _chars_before(self, t: int) -> float:
    starts = self.documents[:, 0]
    d = int(np.searchsorted(starts, t, side='right')) - 1
    if d >= len(starts) - 1:
      return float(self.documents[-1, 1])
    (t0, c0), (t1, c1) = self.documents[d], self.documents[d + 1]
    return float(c0 + (c1 - c0) * (t - t0) / max(t1 - t0, 1))


def open_or_prepare(spec, store_root: str, progress: bool = True):
  """The store of `spec` (a Spec, or any with folder(), build(tmp, progress) -> meta
  and open(path)) under store_root, prepared first when there is none yet (or only
  a damaged one)."""
  path = os.path.join(store_root, spec.folder())
  try:
    return spec.open(path)
  except (Damaged, OSError) as e:  # OSError: another process is replacing it.
    if os.path.exists(path):
      logging.warning('prepared store %s is unusable (%s); preparing it again', path, e)
  with preparing(path):  # one process at a time; the others then find it done.
    try:
      return spec.open(path)
    except (Damaged, OSError):
      pass
    prepare(spec, path, progress)
    try:
      return spec.open(path)
    except (Damaged, OSError) as e:
      raise UserError(f'the store just prepared at {path} fails its check ({e}): its '
                      'filesystem changes files on rename or is written by another process; '
                      'set data.store_dir to a local folder') from None


def prepare(spec, path: str, progress: bool = True) -> dict:
  """Builds spec's store at `path` through a temporary folder; returns its meta,
  with the size, modification time and sampled digest of each of its files."""
  parent = os.path.dirname(path) or '.'
  os.makedirs(parent, exist_ok=True)
  host = socket.gethostname()
  for stale in os.listdir(parent):  # what killed preparations on this host left.
    prefix = f'{os.path.basename(path)}.tmp-{host}-'
    if stale.startswith(prefix) and not _alive(stale[len(prefix):]):
      shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
  tmp = f'{path}.tmp-{host}-{os.getpid()}'
  started = time.time()
  try:
    os.makedirs(tmp)
    meta = {'format': FORMAT, **spec.build(tmp, progress),
            'prepared_at': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
            'seconds': round(time.time() - started, 2)}
    names = sorted(os.path.relpath(os.path.join(d, n), tmp)
                   for d, _, files in os.walk(tmp) for n in files)
    meta['files'] = {n: [os.path.getsize(os.path.join(tmp, n)),
                         os.stat(os.path.join(tmp, n)).st_mtime_ns] for n in names}
    meta['digest'] = {n: _digest(os.path.join(tmp, n)) for n in names}
    _write_json(os.path.join(tmp, 'meta.json'), meta)
    if os.path.exists(path):
      shutil.rmtree(path)
    os.rename(tmp, path)
  except OSError as e:
    shutil.rmtree(tmp, ignore_errors=True)
    what = 'the disk is full' if e.errno == 28 else str(e)
    raise UserError(f'preparing the store {path} failed: {what}; nothing was kept, so the '
                    'same command prepares it again once that is fixed') from None
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  logging.info('prepared %s in %.1f s: %s', path, meta['seconds'], meta.get('summary', ''))
  return meta


# --- building ------------------------------------------------------------------------


def _build(spec: Spec, tmp: str, progress: bool) -> dict:
  paths = spec.files()
  total = sum(os.path.getsize(p) for p in paths)
  path = os.path.join(tmp, 'tokens.bin')
  one_pass = spec.tokenizer == 'char' and not spec.base
  bar = Progress(f'preparing {spec.path}', total, progress)
  done = _ascii_chars(spec, paths, path, bar) if one_pass else None
  if done is None:  # a tokenizer to learn first (or text that is not ASCII): two passes.
    bar = Progress(f'preparing {spec.path}', (1 + (spec.tokenizer in ('char', 'word')
                                                   and not spec.base)) * total, progress)
    vocab_lib.save(_tokenizer(spec, paths, tmp, bar), os.path.join(tmp, 'tokenizer'))
    shutil.rmtree(os.path.join(tmp, 'spm'), ignore_errors=True)  # SentencePiece's trainer's.
    vocab = vocab_lib.load(os.path.join(tmp, 'tokenizer'))
    reader = sources.Reader(paths, spec.text_field, spec.encoding_errors)
    documents, tokens, chars = _write_tokens(
        ahead(_carried(reader.chunks(), spec.tokenizer)), _encoder(spec.tokenizer, vocab),
        vocab_lib.id_dtype(len(vocab)), path, lambda: bar.update(reader.bytes_read),
        vocab.eos_id)
  else:
    vocab, documents, tokens, chars = done
    vocab_lib.save(vocab, os.path.join(tmp, 'tokenizer'))
  dtype = vocab_lib.id_dtype(len(vocab))
  if tokens <= len(documents) - 1:
    raise UserError(f'corpus {spec.path!r} is empty: no text in {", ".join(paths)}')
  np.asarray(documents, np.int64).tofile(os.path.join(tmp, 'documents.bin'))
  bar.done()
  seconds = max(time.time() - bar.start, 1e-9)
  return {'spec': dataclasses.asdict(spec),
          'source': {'files': paths, 'fingerprint': sources.fingerprint(paths),
                     'bytes': sum(os.path.getsize(p) for p in paths)},
          'tokenizer': {**spec.settings(), 'fingerprint': vocab_lib.fingerprint(vocab)},
          'vocab_size': len(vocab), 'dtype': np.dtype(dtype).name, 'tokens': tokens,
          'documents': len(documents) - 1, 'characters': chars,
          'summary': f'{tokens:,} tokens in {len(documents) - 1:,} documents ({spec.tokenizer}, '
                     f'vocabulary {len(vocab)}), {chars / seconds / 1e6:.1f} M characters/s'}


def _write_tokens(chunks, encode, dtype, path: str, progress, eos_id: int = vocab_lib.EOS):
  """Writes each (text, ends_document) chunk's ids to `path`, eos_id (</s>) after
  each document; returns (documents: [(first token, first character)] and the
  totals after them, tokens, characters)."""
  eos = np.array([eos_id], dtype)
  documents, tokens, chars, in_document = [], 0, 0, False
  with open(path, 'wb') as out:
    for text, ends in chunks:
      if not in_document:
        documents.append((tokens, chars))
        in_document = True
      ids = encode(text).astype(dtype, copy=False)
      if ends:
        ids = np.concatenate([ids, eos])
        in_document = False
      out.write(np.ascontiguousarray(ids).data)
      tokens, chars = tokens + len(ids), chars + len(text)
      progress()
  documents.append((tokens, chars))
  return documents, tokens, chars


def _ascii_chars(spec: Spec, paths, path: str, bar):
  """The character tokenizer on ASCII text in one pass over the source: each byte
  is written as it is (</s> as its own id, 2) while the alphabet is
  collected, then one pass over the written file (in the page cache) turns
  bytes into ids. -> (vocab, documents, tokens, characters), or None once a
  chunk is not ASCII (the caller then makes the usual two passes)."""
  reader = sources.Reader(paths, spec.text_field, spec.encoding_errors)
  seen = bytearray()

  def raw_bytes():
    nonlocal seen
    for text, ends in ahead(reader.chunks()):
      if not text.isascii():
        raise _NotAscii
      raw = text.encode('ascii')
      if new := raw.translate(None, bytes(seen)):  # one C pass deletes what is known.
        seen += bytes(sorted(set(new)))
      yield raw, ends

  identity = lambda raw: np.frombuffer(raw, np.uint8)
  try:
    documents, tokens, chars = _write_tokens(
        ((raw, ends) for raw, ends in raw_bytes()), identity, np.uint8, path,
        lambda: bar.update(reader.bytes_read))
  except _NotAscii:
    return None
  if vocab_lib.EOS in seen:  # the text holds the byte that stands for </s>.
    return None
  vocab = vocab_lib.CharVocab([chr(b) for b in seen], fallback=' ')
  table = bytearray(range(256))
  for b in seen:
    table[b] = vocab.stoi[chr(b)]
  table[vocab_lib.EOS] = vocab_lib.EOS  # written by _write_tokens as the id itself.
  with open(path, 'r+b') as f:
    while chunk := f.read(1 << 26):
      f.seek(-len(chunk), os.SEEK_CUR)
      f.write(chunk.translate(bytes(table)))
  return vocab, documents, tokens, chars


class _NotAscii(Exception):
  pass


def _tokenizer(spec: Spec, paths, tmp: str, bar) -> vocab_lib.Vocab:
  if spec.base:
    return vocab_lib.load(spec.base)
  if spec.tokenizer == 'huggingface':
    raise UserError('data.tokenizer=huggingface reads its tokenizer from data.tokenizer_path '
                    '(or init.from_hf); give one')
  if spec.tokenizer == 'byte':
    return vocab_lib.ByteVocab()
  reader = sources.Reader(paths, spec.text_field, spec.encoding_errors)
  if spec.tokenizer == 'char':  # the corpus's own alphabet, in one vectorized pass.
    seen = np.zeros(128, bool)
    for text, _ in ahead(reader.chunks()):
      if text.isascii():  # the bytes not seen yet: one C pass deletes the others.
        points = np.frombuffer(text.encode('ascii').translate(
            None, np.flatnonzero(seen[:128]).astype(np.uint8).tobytes()), np.uint8)
      else:
        points = np.frombuffer(text.encode('utf-32-le'), np.uint32)
      if len(points) and points.max() >= len(seen):
        seen = np.concatenate([seen, np.zeros(int(points.max()) + 1 - len(seen), bool)])
      if len(points):
        seen[np.unique(points) if len(points) < 1 << 16 else _present(points, len(seen))] = True
      bar.update(reader.bytes_read)
    bar.next_pass(reader.total_bytes)
    return vocab_lib.CharVocab([chr(c) for c in np.flatnonzero(seen)], fallback=' ')
  if spec.tokenizer == 'word':  # the vocab_size most frequent words.
    counts = {}
    for text, _ in _carried(reader.chunks(), 'word'):
      for word in text.split():
        counts[word] = counts.get(word, 0) + 1
      bar.update(reader.bytes_read)
    bar.next_pass(reader.total_bytes)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return vocab_lib.WordVocab(ranked[:max(spec.vocab_size - len(vocab_lib.SPECIALS), 0)])
  if spec.tokenizer == 'sentencepiece':
    sample, size = [], 0
    for text, _ in _carried(reader.chunks(), 'sentencepiece'):
      sample += _pieces(text[:SAMPLE_CHARS - size], 4096)
      size += min(len(text), SAMPLE_CHARS - size)
      if size >= SAMPLE_CHARS:
        break
    if not any(line.strip() for line in sample):
      raise UserError(f'corpus {spec.path!r} is empty: no text in {", ".join(paths)}')
    return vocab_lib.SentencePieceVocab.train(sample, spec.vocab_size, 'bpe',
                                              os.path.join(tmp, 'spm'))
  raise UserError(f'unknown data.tokenizer {spec.tokenizer!r}; use {", ".join(TOKENIZERS)}')


def _present(points: np.ndarray, size: int) -> np.ndarray:
  """The values in `points` (all < size), by a count rather than a sort."""
  return np.flatnonzero(np.bincount(points, minlength=size))


def _encoder(tokenizer: str, vocab):
  """text -> ids: SentencePiece and Hugging Face tokenizers encode pieces of it on
  every core; the others one array at a time."""
  if tokenizer == 'sentencepiece':
    threads = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    encode_pieces = lambda pieces: vocab.sp.encode(pieces, num_threads=threads)
  elif tokenizer == 'huggingface':
    encode_pieces = vocab.encode_many
  else:
    return vocab.encode_array

  def encode(text):
    pieces = encode_pieces(_pieces(text, 1 << 16, tokenizer))
    return np.fromiter((i for p in pieces for i in p), np.int64)
  return encode


# Where GPT-2's byte-level pre-tokenizer always starts a pre-token: whitespace after
# a non-space, or a space before a non-space. Its pattern looks behind nothing, so
# the text from such a place splits as it does inside the whole text.
_PRETOKEN_START = re.compile(r'(?<=\S)\s| (?=\S)')
# A Hugging Face tokenizer's text with no such place is cut anyway past this many
# characters (memory stays bounded; the tokens at that one cut may differ).
UNBROKEN_CHARS = 1 << 22


def _word_start(text: str, start: int, end: int) -> int:
  """The last place in text(start, end) where a pre-token starts, else the first
  after `end`, else -1: a cut there changes no token of GPT-2's byte-level BPE."""
  lo = max(start + 1, end - (1 << 12))
  while True:
    last = -1
    for m in _PRETOKEN_START.finditer(text, lo, end):
      last = m.start()
    if last > start:
      return last
    if lo <= start + 1:
      break
    lo = max(start + 1, lo - (1 << 16))
  m = _PRETOKEN_START.search(text, max(end, start + 1))
  return m.start() if m else -1


def _pieces(text: str, size: int, tokenizer: str = 'sentencepiece') -> list[str]:
  """`text` cut into pieces of about `size` characters: after whitespace
  (SentencePiece normalizes it to one boundary), or for a Hugging Face tokenizer
  where a pre-token starts (_word_start); neither cut changes a token."""
  out, start = [], 0
  while start < len(text):
    end = start + size
    if end < len(text):
      if tokenizer == 'huggingface':
        cut = _word_start(text, start, end)
        end = cut if cut > start else len(text)
      else:
        cut = text.rfind(' ', start, end)
        end = cut + 1 if cut > start else end
    out.append(text[start:end])
    start = end
  return out


def _carried(chunks, tokenizer: str):
  """Chunks cut at whitespace for the tokenizers that read words (a chunk's last,
  maybe partial, word moves to the next; a Hugging Face tokenizer's chunks end
  where a pre-token starts); characters and bytes need no cut."""
  if tokenizer in ('char', 'byte'):
    yield from chunks
    return
  tail = ''
  for text, ends in chunks:
    text = tail + text
    if ends:
      tail = ''
      yield text, True
      continue
    if tokenizer == 'huggingface':  # no place to cut: it waits for the next chunk.
      cut = _word_start(text, 0, len(text))
      if cut <= 0 and len(text) > UNBROKEN_CHARS:
        logging.warning('%d characters without whitespace: cut there, where a token may '
                        'differ from the whole text\'s', len(text))
        cut = len(text)
      tail, text = (text[cut:], text[:cut]) if cut > 0 else (text, '')
    else:
      cut = max(text.rfind(' '), text.rfind('\n'))
      tail, text = (text[cut + 1:], text[:cut + 1]) if cut >= 0 else ('', text)
    if text:
      yield text, False


def ahead(iterable, depth: int = 2):
  """Iterates `iterable` on a second thread, `depth` items ahead (reading and
  decompressing overlap the tokenizing); its exceptions reach the caller."""
  items = queue.Queue(depth)
  stop = threading.Event()
  end = object()

  def put(item) -> bool:
    while not stop.is_set():
      try:
        items.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def produce():
    try:
      for item in iterable:
        if not put(item):
          return
      put(end)
    except BaseException as e:  # pylint: disable=broad-except
      put(e)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  try:
    while (item := items.get()) is not end:
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()


class Progress:
  """A progress line every few seconds: work done (bytes of the source, or pairs),
  its rate and, with a total, the percentage and ETA."""

  def __init__(self, what: str, total: int, enabled: bool = True, every: float = 5.0,
               unit: str = 'MB', scale: float = 1e6):
    self.what, self.total, self.enabled, self.every = what, total, enabled, every
    self.unit, self.scale = unit, scale
    self.start = self.last = time.time()
    self.base = self.done_bytes = 0

  def update(self, pass_done: int):
    self.done_bytes = self.base + pass_done
    now = time.time()
    if self.enabled and now - self.last >= self.every:
      self.last = now
      rate = self.done_bytes / max(now - self.start, 1e-9)
      done = f'{self.done_bytes / self.scale:,.0f}'
      if self.total:
        eta = int((self.total - self.done_bytes) / max(rate, 1e-9))
        logging.info('%s: %s of %s %s (%d%%), %.1f %s/s, ETA %d:%02d:%02d', self.what, done,
                     f'{self.total / self.scale:,.0f}', self.unit,
                     100 * self.done_bytes // self.total, rate / self.scale, self.unit,
                     eta // 3600, eta // 60 % 60, eta % 60)
      else:
        logging.info('%s: %s %s, %.1f %s/s', self.what, done, self.unit, rate / self.scale,
                     self.unit)

  def next_pass(self, pass_total: int):
    self.base += pass_total

  def done(self):
    self.done_bytes = self.total


# --- checking ----------------------------------------------------------------------------


def check(path: str) -> dict:
  """The store's meta, after checking that it is complete and unchanged."""
  try:
    with open(os.path.join(path, 'meta.json'), encoding='utf-8') as f:
      meta = json.load(f)
  except FileNotFoundError:
    raise Damaged('unfinished: no meta.json') from None
  except (OSError, ValueError) as e:
    raise Damaged(f'meta.json unreadable: {e}') from None
  if meta.get('format') != FORMAT:
    raise Damaged(f'format {meta.get("format")}, not {FORMAT}')
  for name, (size, mtime) in meta['files'].items():
    full = os.path.join(path, name)
    if not os.path.isfile(full) or os.path.getsize(full) != size:
      found = os.path.getsize(full) if os.path.isfile(full) else 'missing'
      raise Damaged(f'{name} has {found} bytes, {size} when prepared: cut short or changed')
    if os.stat(full).st_mtime_ns != mtime or _digest(full) != meta['digest'][name]:
      raise Damaged(f'{name} was written after it was prepared (copy a store with its '
                    'modification times: rsync -a, cp -p)')
  return meta


def _alive(pid: str) -> bool:
  """Whether the process `pid` of this host still runs (a folder it writes is not stale)."""
  try:
    os.kill(int(pid), 0)
  except (ValueError, ProcessLookupError):
    return False
  except PermissionError:
    return True
  return True


def _digest(path: str, blocks: int = 64, size: int = 4096) -> str:
  """sha256 of `blocks` blocks spread evenly over the file: a cheap check that its
  contents are those prepared, whatever the file's size."""
  h = hashlib.sha256()
  total = os.path.getsize(path)
  with open(path, 'rb') as f:
    for i in range(blocks):
      f.seek(total * i // blocks)
      h.update(f.read(size))
  return h.hexdigest()[:32]


def _write_json(path: str, obj):
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    json.dump(obj, f, indent=1, ensure_ascii=False)
  os.replace(path + '.tmp', path)
