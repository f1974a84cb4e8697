"""Raw text sources of any size, read as a stream of documents.

A source is a file, a directory (its .txt, .gz, .jsonl and .jsonl.gz files,
sorted) or a glob. A .txt, .gz or .zip file (its first member) is one document; each line of a .jsonl or
.jsonl.gz file is one, its text under `text_field` (as in OpenWebText's or The
Pile's dumps). Plain text is read CHUNK bytes at a time, so a 1 GB line without a
line feed streams like any other, and memory stays bounded at any size.
"""
import codecs
import glob
import gzip
import hashlib
import json
import os
import zipfile
import zlib

from research.data import text_files
from research.errors import UserError

CHUNK = 1 << 24
TEXT_SUFFIXES = ('.txt', '.gz')
JSONL_SUFFIXES = ('.jsonl', '.jsonl.gz')


def files(path: str, suffixes=TEXT_SUFFIXES) -> list[str]:
  """A file, a directory (its files with one of `suffixes`, sorted) or a glob."""
  if os.path.isdir(path):
    found = sorted(p for p in glob.glob(os.path.join(path, '*'))
                   if p.endswith(suffixes) and os.path.isfile(p))
  elif os.path.isfile(path):
    found = [path]
  else:
    found = sorted(p for p in glob.glob(path) if os.path.isfile(p))
  if not found:
    raise UserError(f'corpus {path!r}: no such file, or no {" / ".join(suffixes)} files there')
  return found


def tree_fingerprint(folder: str) -> str:
  """fingerprint of every file under `folder`."""
  return fingerprint(sorted(os.path.join(d, n) for d, _, names in os.walk(folder)
                            for n in names))


def fingerprint(paths: list[str]) -> str:
  """Names, sizes and modification times of the files: a source that changed, or
  another copy, gets another fingerprint (and so another prepared store)."""
  h = hashlib.sha256()
  for path in paths:
    stat = os.stat(path)
    h.update(f'{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns};'.encode())
  return h.hexdigest()[:16]


def is_jsonl(path: str) -> bool:
  return path.endswith(JSONL_SUFFIXES)


class Reader:
  """The documents of some files as (text, ends_document) chunks, in order;
  bytes_read counts the files' bytes consumed (compressed ones as stored), for a
  progress bar against total_bytes."""

  def __init__(self, paths: list[str], text_field: str = 'text', errors: str = 'strict'):
    if errors not in ('strict', 'replace'):
      raise UserError(f'data.encoding_errors must be strict or replace, not {errors!r}')
    self.paths, self.text_field, self.errors = list(paths), text_field, errors
    self.total_bytes = sum(os.path.getsize(p) for p in self.paths)
    self._done_bytes, self._raw = 0, None

  @property
  def bytes_read(self) -> int:
    raw, done = self._raw, self._done_bytes  # the reading thread may move on meanwhile.
    try:
      return done + (raw.tell() if raw is not None else 0)
    except (OSError, ValueError):  # closed meanwhile.
      return done

  def chunks(self):
    for path in self.paths:
      try:
        with open(path, 'rb') as raw:
          self._raw = raw
          if path.endswith('.zip'):  # its first member (text8.zip holds one).
            archive = zipfile.ZipFile(raw)
            stream = archive.open(archive.namelist()[0])
          else:
            stream = gzip.GzipFile(fileobj=raw) if path.endswith('.gz') else raw
          if is_jsonl(path):
            yield from self._jsonl(path, stream)
          elif path.endswith('.gz'):
            yield from self._text(path, gunzip(raw))
          else:
            yield from self._text(path, iter(lambda: stream.read(CHUNK), b''))
      except text_files.READ_ERRORS as e:
        raise UserError(f'could not read {path}: {e}') from None
      finally:
        self._raw = None
      self._done_bytes += os.path.getsize(path)

  def _text(self, path, blocks):
    decoder = codecs.getincrementaldecoder('utf-8')(self.errors)
    offset, first = 0, True
    blocks = iter(blocks)
    while True:
      block = next(blocks, b'')
      try:
        text = decoder.decode(block, final=not block)
      except UnicodeDecodeError as e:
        raise UserError(f'{path}: bytes that are not UTF-8 near byte {offset + e.start} '
                        f'({e.reason}); data.encoding_errors=replace reads them as '
                        'U+FFFD') from None
      offset += len(block)
      if first and text:
        text, first = text.removeprefix('\ufeff'), False
      if not block:
        yield text, True
        return
      if text:
        yield text, False

  def _jsonl(self, path, stream):
    for number, line in enumerate(stream, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line.decode('utf-8', errors=self.errors))
      except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f'{path}, line {number}: not a JSON object ({_first(e)})') from None
      text = record.get(self.text_field) if isinstance(record, dict) else None
      if not isinstance(text, str):
        raise UserError(f'{path}, line {number}: no text field {self.text_field!r} '
                        f'(data.text_field); the line holds '
                        f'{sorted(record) if isinstance(record, dict) else type(record).__name__}')
      try:
        text.encode('utf-8')
      except UnicodeEncodeError:  # a lone surrogate escape, e.g. "\ud83d".
        if self.errors == 'strict':
          raise UserError(f'{path}, line {number}: text that is not valid Unicode (a lone '
                          'surrogate escape); data.encoding_errors=replace reads it as '
                          'U+FFFD') from None
        text = text.encode('utf-8', 'replace').decode('utf-8')
      yield text, True


def gunzip(raw, size: int = 1 << 22):
  """The decompressed blocks of a gzip file (all its members), by zlib directly: a
  quarter faster than gzip.GzipFile. A stream cut short is an EOFError, as there."""
  inflate, started = zlib.decompressobj(wbits=31), False
  while chunk := raw.read(size):
    started = True
    while chunk:
      block = inflate.decompress(chunk)
      if block:
        yield block
      if inflate.eof:  # the next member, if any, starts in what is left.
        chunk, inflate, started = inflate.unused_data, zlib.decompressobj(wbits=31), False
      else:
        chunk = b''
  if started:
    raise EOFError('Compressed file ended before the end-of-stream marker was reached')


def _first(e: Exception) -> str:
  return str(e).splitlines()[0][:200] if str(e) else type(e).__name__
