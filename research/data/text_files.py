"""Reading local copies of text corpora: plain or gzip, with clear errors."""
import gzip
import os

from research.errors import UserError


def find(directory: str, name: str, subdirs=('', 'raw')) -> str | None:
  """The path of `name` or `name.gz` in `directory` (or one of `subdirs`)."""
  for sub in subdirs:
    for candidate in (name, name + '.gz'):
      path = os.path.join(directory, sub, candidate)
      if os.path.isfile(path):
        return path
  return None


def read_lines(path: str, errors: str = 'strict') -> list[str]:
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rt', encoding='utf-8', errors=errors, newline='\n') as f:
      return [line.rstrip('\n').rstrip('\r') for line in f]
  except UnicodeDecodeError as e:
    raise UserError(f'{path} is not valid UTF-8 ({e.reason} at byte {e.start})') from None
  except (OSError, EOFError) as e:
    raise UserError(f'could not read {path}: {e}') from None


def require_dir(path: str, what: str, layout: str):
  if not os.path.isdir(path):
    raise UserError(f'{what}: data directory {path!r} does not exist; expected {layout}')
