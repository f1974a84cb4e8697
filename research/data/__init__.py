"""Datasets, vocabularies and batching."""
import hashlib
import os


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
