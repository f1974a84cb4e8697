"""Tatoeba sentence pairs (manythings.org/anki, e.g. fra-eng) as a TFDS builder.

The file has one "English<TAB>Other[<TAB>attribution]" pair per line and no
splits. The builder splits by a hash of the English sentence, so every translation of
one sentence lands in the same split: 5% test, 5% validation, 90% train.
Offline, `--config.data.path` is a directory holding fra.txt[.gz] (or the file).
"""
import dataclasses
import hashlib
import os
import zipfile

import tensorflow_datasets as tfds

from research.data import text_files
from research.data.tfds_base import ParallelTextBuilder
from research.errors import UserError

URL = 'https://www.manythings.org/anki/{lang}-eng.zip'
LAYOUT = '{lang}.txt or {lang}.txt.gz with "English<TAB>translation" lines'


@dataclasses.dataclass
class TatoebaConfig(tfds.core.BuilderConfig):
  lang: str = 'fra'          # the non-English language, as in the file name.
  english_is_source: bool = False


def split_of(english: str) -> str:
  bucket = int(hashlib.md5(english.encode('utf-8')).hexdigest(), 16) % 100
  return 'test' if bucket < 5 else 'validation' if bucket < 10 else 'train'


class Tatoeba(ParallelTextBuilder):
  """Tatoeba English pairs; configs fr-en and en-fr."""
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [TatoebaConfig(name='fr-en', lang='fra', english_is_source=False),
                     TatoebaConfig(name='en-fr', lang='fra', english_is_source=True)]
  HOMEPAGE = 'https://www.manythings.org/anki/'
  LOCAL_NAME = 'tatoeba_fra_eng'

  def _split_generators(self, dl_manager):
    lang = self.builder_config.lang
    name = f'{lang}.txt'
    if self.local_dir:
      path = self.local_dir if os.path.isfile(self.local_dir) else (
          text_files.find(self.local_dir, name) if os.path.isdir(self.local_dir) else None)
      if path is None:
        raise UserError(f'tatoeba: {name}[.gz] not found at {self.local_dir}; expected '
                        + LAYOUT.format(lang=lang))
      lines = text_files.read_lines(path)
    else:
      archive = dl_manager.download(URL.format(lang=lang))
      with zipfile.ZipFile(archive) as z:
        lines = z.read(name).decode('utf-8').splitlines()
    pairs = {'train': [], 'validation': [], 'test': []}
    for number, line in enumerate(lines, 1):
      cols = line.split('\t')
      if len(cols) < 2 or not cols[0].strip() or not cols[1].strip():
        raise UserError(f'tatoeba: line {number} is not "English<TAB>translation": {line[:80]!r}')
      english, other = cols[0], cols[1]
      pair = (english, other) if self.builder_config.english_is_source else (other, english)
      pairs[split_of(english)].append(pair)
    return {split: self._generate_examples(p) for split, p in pairs.items()}
