"""Datasets, vocabularies and batching.

Local copies: a dataset is read from `data.path` when given, else from its
folder under the root that the SEQLAB_DATA environment variable names (as
TFDS_DATA_DIR names TFDS's), e.g. $SEQLAB_DATA/multi30k/; with neither, the
TFDS builders download from the public sources.
"""
import contextlib
import errno
import fcntl
import hashlib
import os

DATA_ENV = 'SEQLAB_DATA'
TEXT8LIKE = os.path.join('wiki2019_text8like', 'text8like.gz')  # the default text corpus.


def local_path(path: str, default: str) -> str:
  """`path` (data.path) when given; else `default` under $SEQLAB_DATA when it
  exists there; else '' (download)."""
  if path:
    return path
  root = os.environ.get(DATA_ENV, '')
  candidate = os.path.join(root, default) if root else ''
  return candidate if candidate and os.path.exists(candidate) else ''


def prepared_data_dir(data_dir: str, local: str = '') -> str | None:
  """Where a TFDS builder keeps its prepared data (and the tokenizers trained on it).

  Downloads go to data_dir (TFDS's default when empty). A local copy gets a folder
  of its own under it, named by a fingerprint of its files' names, sizes and
  modification times, so that two copies, or a copy that changed, never share
  prepared data.
  """
  if not local:
    return data_dir or None
  root = data_dir or os.path.expanduser(os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))
  local = os.path.abspath(local)
  if os.path.isfile(local):
    files = [local]
  else:
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(local) for f in names)
  h = hashlib.sha256(local.encode())
  for path in files:
    stat = os.stat(path)
    h.update(f'{os.path.relpath(path, local)}:{stat.st_size}:{stat.st_mtime_ns};'.encode())
  return os.path.join(root, 'local', h.hexdigest()[:16])


def prepared_records(builder, split: str) -> list[dict]:
  """All records of a split of a prepared (array_record) TFDS builder, read through
  TFDS data sources, without TensorFlow."""
  source = builder.as_data_source(split)
  return source.__getitems__(list(range(len(source))))


@contextlib.contextmanager
def preparing(data_dir: str):
  """One process at a time prepares the data under `data_dir`: TFDS writes into a
  temporary folder and renames it into place, and a second process preparing the
  same dataset at once (a parallel sweep on a fresh machine) fails that rename.
  The later one waits here, then finds the data prepared. Filesystems without
  flock go unlocked."""
  os.makedirs(os.path.dirname(data_dir) or '.', exist_ok=True)
  fd = os.open(data_dir.rstrip('/') + '.lock', os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
        raise
    yield
  finally:
    os.close(fd)  # releases the lock.


def prepared_builder(make):
  """make() -> a TFDS builder, prepared by one process at a time (`preparing`). It
  is made again once the lock is held: a builder reads what is prepared when made."""
  with preparing(str(make().data_dir)):
    builder = make()
    builder.download_and_prepare()
  return builder
