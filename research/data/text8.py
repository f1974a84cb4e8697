"""text8: where its local file is, and how it is read.

text8 (Mahoney: the first 10^8 bytes of English Wikipedia, cleaned): where its
file is, and how it reads.

Online text8.zip is downloaded from mattmahoney.net once; offline `text8`,
`text8.zip` or `text8.gz` is read from a local directory (`--config.data.path`
with data.name=text8). The language model's store reads the file itself;
word2vec reads it through the TFDS builder of text8_tfds.py.
"""
import os

from research.data import local_path, text_files
from research.errors import UserError

URL = 'http://mattmahoney.net/dc/text8.zip'
WORDS_PER_EXAMPLE = 10000
LOCAL_NAMES = ('text8', 'text8.zip', 'text8.gz')


def read_text(path: str) -> str:
  path = str(path)
  return text_files.decode(text_files.read_bytes(path, 'text8' if path.endswith('.zip') else ''),
                           path)


def source_file(local_dir: str = '', data_dir: str = '') -> str:
  """The text8 file a prepared store reads: the local copy (data.path, else
  $SEQLAB_DATA/text8), or text8.zip downloaded once into data_dir."""
  local_dir = local_path(local_dir, 'text8')
  if local_dir:
    if os.path.isfile(local_dir):
      return local_dir
    for name in LOCAL_NAMES:
      if os.path.isfile(os.path.join(local_dir, name)):
        return os.path.join(local_dir, name)
    raise UserError(f'text8: none of {", ".join(LOCAL_NAMES)} in {local_dir}')
  root = data_dir or os.path.expanduser(os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (only to download)
  manager = tfds.download.DownloadManager(download_dir=os.path.join(root, 'downloads'))
  return str(manager.download(URL))
