"""Vocabularies: characters, words and SentencePiece pieces, one interface.

Every vocabulary reserves ids 0-3 for <pad>, <s>, </s> and <unk>, and offers
encode(text) -> ids, decode(ids) -> text (stopping at </s>) and encode_batch.
"""
import collections
import hashlib
import os
import re
import tempfile

import numpy as np

from research.errors import UserError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ('<pad>', '<s>', '</s>', '<unk>')


class Vocab:
  """The shared part: padding, truncation and batching."""

  def __len__(self):
    raise NotImplementedError

  def encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def decode(self, ids) -> str:
    raise NotImplementedError

  def pieces(self, text: str) -> list[str]:
    """The tokens of `text` as strings (for plot labels)."""
    raise NotImplementedError

  def never_emitted(self) -> tuple[int, ...]:
    """Ids a decoder must not emit though the table has them."""
    return ()

  def id_pieces(self, ids) -> list[str]:
    """The token strings of `ids`, up to </s>."""
    return [self.itos[i] for i in self._until_eos(ids)]

  def encode_batch(self, texts, max_len: int, add_eos: bool) -> tuple[np.ndarray, int]:
    """Returns (ids [n, max_len] padded with PAD, number of truncated texts)."""
    ids = np.full((len(texts), max_len), PAD, dtype=np.int32)
    truncated = 0
    for row, text in enumerate(texts):
      seq = self.encode(text) + ([EOS] if add_eos else [])
      if len(seq) > max_len:
        truncated += 1
        seq = seq[:max_len - 1] + [EOS] if add_eos else seq[:max_len]
      ids[row, :len(seq)] = seq
    return ids, truncated

  @staticmethod
  def _until_eos(ids):
    for i in ids:
      i = int(i)
      if i == EOS:
        return
      yield i


class CharVocab(Vocab):
  """Maps characters to ids; characters never seen in training map to <unk>."""

  def __init__(self, chars):
    self.itos = list(SPECIALS) + sorted(set(chars) - set(SPECIALS))
    self.stoi = {c: i for i, c in enumerate(self.itos)}

  @classmethod
  def from_texts(cls, texts):
    return cls(set().union(*map(set, texts)))

  def __len__(self):
    return len(self.itos)

  def encode(self, text: str) -> list[int]:
    return [self.stoi.get(c, UNK) for c in text]

  def decode(self, ids) -> str:
    return ''.join(self.itos[i] if i >= len(SPECIALS) else '?' if i == UNK else ''
                   for i in self._until_eos(ids))

  def pieces(self, text: str) -> list[str]:
    return list(text)


class WordVocab(Vocab):
  """Whitespace words, the `max_size` most frequent with count >= min_count."""

  def __init__(self, words):
    self.itos = list(SPECIALS) + [w for w in words if w not in SPECIALS]
    self.stoi = {w: i for i, w in enumerate(self.itos)}

  @classmethod
  def from_texts(cls, texts, max_size: int = 0, min_count: int = 1):
    counts = collections.Counter(w for t in texts for w in t.split())
    ranked = sorted((w for w, c in counts.items() if c >= min_count),
                    key=lambda w: (-counts[w], w))
    return cls(ranked[:max_size - len(SPECIALS)] if max_size else ranked)

  def __len__(self):
    return len(self.itos)

  def encode(self, text: str) -> list[int]:
    return [self.stoi.get(w, UNK) for w in text.split()]

  def decode(self, ids) -> str:
    return ' '.join(self.itos[i] for i in self._until_eos(ids) if i >= len(SPECIALS) or i == UNK)

  def pieces(self, text: str) -> list[str]:
    return text.split()


class SentencePieceVocab(Vocab):
  """A SentencePiece model (BPE or unigram) with byte fallback: no input is unknown."""

  def __init__(self, model_path: str):
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    self.path = model_path
    self.sp = spm.SentencePieceProcessor(model_file=model_path)

  @classmethod
  def train(cls, texts, vocab_size: int, model_type: str, cache_dir: str):
    """Trains on `texts` (the train split only), or loads the cached model.

    The cache key covers the texts and the settings, so changing either
    trains a new model beside the old one.
    """
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    digest = hashlib.sha256(f'{vocab_size}:{model_type}'.encode())
    for t in texts:
      digest.update(t.encode('utf-8') + b'\n')
    path = os.path.join(cache_dir, f'spm_{model_type}_{vocab_size}_{digest.hexdigest()[:12]}.model')
    if not os.path.exists(path):
      os.makedirs(cache_dir, exist_ok=True)
      with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        prefix = os.path.join(tmp, 'spm')
        try:
          spm.SentencePieceTrainer.train(
              sentence_iterator=iter(texts), model_prefix=prefix, vocab_size=vocab_size,
              model_type=model_type, character_coverage=1.0, byte_fallback=True,
              pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=UNK, hard_vocab_limit=False,
              num_threads=2, minloglevel=2)
        except RuntimeError as e:
          # The trainer's own words: "... smaller than required_chars. 300 vs 357."
          need = re.search(r'required_chars\. \d+ vs (\d+)', str(e))
          if need:
            raise UserError(
                f'data.vocab_size={vocab_size} is too small for a SentencePiece model of '
                f'this corpus: its characters and the 256 byte pieces need at least '
                f'{need.group(1)}; use data.vocab_size >= {need.group(1)}') from None
          raise
        os.replace(prefix + '.model', path)  # atomic: no half-written model is ever cached.
    return cls(path)

  def __len__(self):
    return self.sp.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self.sp.encode(text)

  def decode(self, ids) -> str:
    return self.sp.decode([i for i in self._until_eos(ids) if i not in (PAD, BOS)])

  def pieces(self, text: str) -> list[str]:
    return self.sp.encode(text, out_type=str)

  def never_emitted(self) -> tuple[int, ...]:
    """The byte pieces of control characters, a line feed among them: the normalizer
    maps line breaks and most controls to spaces before training, so no target holds
    them, yet an undertrained model may emit one and break its output's lines."""
    control = {f'<0x{b:02X}>' for b in list(range(0x20)) + [0x7F]}
    return tuple(i for i in range(len(self)) if self.sp.is_byte(i)
                 and self.sp.id_to_piece(i) in control)

  def id_pieces(self, ids) -> list[str]:
    return [self.sp.id_to_piece(i) for i in self._until_eos(ids)]
