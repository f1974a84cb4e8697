"""Reading local copies of text corpora: plain, gzip or zip, with clear errors.

A file that cannot be read (truncated gzip, a broken zip, bytes that are not
UTF-8 under errors='strict') is a UserError naming it; a leading byte-order
mark is dropped, so a file reads as it looks.
"""
import gzip
import os
import zipfile
import zlib

from research.errors import UserError


def find(directory: str, name: str, subdirs=('', 'raw')) -> str | None:
  """The path of `name` or `name.gz` in `directory` (or one of `subdirs`)."""
  for sub in subdirs:
    for candidate in (name, name + '.gz'):
      path = os.path.join(directory, sub, candidate)
      if os.path.isfile(path):
        return path
  return None


READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile)


def read_bytes(path: str, member: str = '') -> bytes:
  """A file's bytes, gunzipped (.gz) or a zip's members joined (.zip; member: just it)."""
  try:
    if path.endswith('.zip'):
      with zipfile.ZipFile(path) as z:
        return b''.join(z.read(n) for n in ([member] if member else z.namelist()))
    with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as f:
      return f.read()
  except KeyError:
    raise UserError(f'{path} holds no {member!r}') from None
  except READ_ERRORS as e:
    raise UserError(f'could not read {path}: {e}') from None


def decode(raw: bytes, path: str, errors: str = 'strict') -> str:
  """UTF-8 text without a leading byte-order mark."""
  try:
    text = raw.decode('utf-8', errors=errors)
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b'\n') + 1
    raise UserError(f'{path}, line {line}: bytes that are not UTF-8 ({e.reason} at byte '
                    f'{e.start}); data.encoding_errors=replace reads them as U+FFFD') from None
  return text[1:] if text.startswith('\ufeff') else text


def read_lines(path: str, errors: str = 'strict') -> list[str]:
  """The lines of a text file, without their line ends (\\n or \\r\\n)."""
  text = decode(read_bytes(path), path, errors)
  lines = [line.rstrip('\r') for line in text.split('\n')]
  return lines[:-1] if lines and not lines[-1] else lines


def require_dir(path: str, what: str, layout: str):
  if not os.path.isdir(path):
    raise UserError(f'{what}: data directory {path!r} does not exist; expected {layout}')
