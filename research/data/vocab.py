"""Tokenizers: characters, bytes, words, SentencePiece and Hugging Face's, one interface.

Tokenizers: characters, UTF-8 bytes, words, SentencePiece pieces and a Hugging
Face tokenizer (GPT-2's byte-level BPE), one interface for every task.

Every vocabulary but Hugging Face's reserves ids 0-3 for <pad>, <s>, </s> and
<unk>; `eos_id` is the one that ends a document of a language-model corpus (</s>,
or GPT-2's <|endoftext|>). Each offers encode(text) -> ids,
encode_array(text) -> a numpy array (vectorized where it can be: preparing a
corpus), decode(ids) -> text (stopping at </s>), encode_batch, and
never_emitted(). save(vocab, folder) and load(folder) carry one into a prepared
store or a run's workdir; fingerprint(vocab) names its contents.
"""
import collections
import hashlib
import json
import os
import re
import tempfile

import numpy as np

from research.errors import UserError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ('<pad>', '<s>', '</s>', '<unk>')


class Vocab:
  """The shared part: padding, truncation and batching."""
  eos_id = EOS

  def __len__(self):
    raise NotImplementedError

  def encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def encode_array(self, text: str) -> np.ndarray:
    """encode(text) as the smallest unsigned dtype that holds every id."""
    return np.asarray(self.encode(text), id_dtype(len(self)))

  def decode(self, ids) -> str:
    raise NotImplementedError

  def pieces(self, text: str) -> list[str]:
    """The tokens of `text` as strings (for plot labels)."""
    raise NotImplementedError

  def never_emitted(self) -> tuple[int, ...]:
    """Ids a decoder must not emit though the table has them."""
    return ()

  def unknown_count(self, text: str) -> int:
    """How many pieces of `text` the vocabulary does not know."""
    return self.encode(text).count(UNK)

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

  def _until_eos(self, ids):
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        return
      yield i


def id_dtype(size: int):
  """The smallest unsigned integer dtype that holds ids 0..size-1."""
  return np.uint8 if size <= 1 << 8 else np.uint16 if size <= 1 << 16 else np.uint32


class CharVocab(Vocab):
  """Maps characters to ids, in code-point order after the specials. A character
  never seen in training maps to <unk>, or with `fallback` to that character (a
  language model's prompts: a space)."""

  def __init__(self, chars, fallback: str = ''):
    self.itos = list(SPECIALS) + sorted(set(chars) - set(SPECIALS))
    self.stoi = {c: i for i, c in enumerate(self.itos)}
    self.fallback = fallback
    self.unknown_id = self.stoi.get(fallback, UNK) if fallback else UNK
    self._table = self._ascii = None

  @classmethod
  def from_texts(cls, texts, fallback: str = ''):
    return cls(set().union(*map(set, texts)), fallback)

  def __len__(self):
    return len(self.itos)

  def encode(self, text: str) -> list[int]:
    return [self.stoi.get(c, self.unknown_id) for c in text]

  def unknown_count(self, text: str) -> int:
    return sum(c not in self.stoi for c in text)

  def encode_array(self, text: str) -> np.ndarray:
    """Vectorized: a table from code points to ids, read in one gather (ASCII text
    into at most 256 ids: one bytes.translate)."""
    if self._table is None:
      codes = [ord(c) for c in self.itos[len(SPECIALS):]]
      self._table = np.full(max(codes, default=0) + 1, self.unknown_id, id_dtype(len(self)))
      self._table[codes] = np.arange(len(SPECIALS), len(self))
      ascii_ids = np.full(256, self.unknown_id, np.int64)
      ascii_ids[:min(len(self._table), 128)] = self._table[:128]
      self._ascii = ascii_ids.astype(np.uint8).tobytes() if len(self) <= 256 else None
    if text.isascii() and self._ascii is not None:
      return np.frombuffer(text.encode('ascii').translate(self._ascii), np.uint8)
    if text.isascii():  # one byte a character: no 4-byte copy.
      points = np.frombuffer(text.encode('ascii'), np.uint8)
    else:
      points = np.frombuffer(text.encode('utf-32-le'), np.uint32)
    inside = points < len(self._table)
    if inside.all():
      return self._table[points]
    return np.where(inside, self._table[np.where(inside, points, 0)], self.unknown_id).astype(
        self._table.dtype)

  def decode(self, ids) -> str:
    return ''.join(self.itos[i] if i >= len(SPECIALS) else '?' if i == UNK else ''
                   for i in self._until_eos(ids))

  def pieces(self, text: str) -> list[str]:
    return list(text)


class ByteVocab(Vocab):
  """UTF-8 bytes, byte b as id 4 + b: every input known, 260 ids."""

  def __len__(self):
    return len(SPECIALS) + 256

  def encode(self, text: str) -> list[int]:
    return self.encode_array(text).tolist()

  def encode_array(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode('utf-8'), np.uint8).astype(np.uint16) + len(SPECIALS)

  def decode(self, ids) -> str:
    return bytes(i - len(SPECIALS) for i in self._until_eos(ids)
                 if i >= len(SPECIALS)).decode('utf-8', errors='replace')

  def pieces(self, text: str) -> list[str]:
    return [_byte_piece(b) for b in text.encode('utf-8')]

  def id_pieces(self, ids) -> list[str]:
    return [SPECIALS[i] if i < len(SPECIALS) else _byte_piece(i - len(SPECIALS))
            for i in self._until_eos(ids)]


def _byte_piece(b: int) -> str:
  return chr(b) if 32 <= b < 127 else f'<0x{b:02X}>'


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
          if 'sentences_.empty()' in str(e) or 'all_chars_count' in str(e):
            raise UserError('the text holds nothing SentencePiece can learn from (only '
                            'whitespace and control characters)') from None
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


class HuggingFaceVocab(Vocab):
  """A Hugging Face `tokenizers` tokenizer with its own ids: a tokenizer.json, or
  GPT-2's vocab.json and merges.txt (byte-level BPE, as GPT2TokenizerFast builds
  it). Its end-of-text token ends documents."""
  END_TOKENS = ('<|endoftext|>', '</s>', '<eos>', '<|end_of_text|>')

  def __init__(self, tokenizer, source: str = ''):
    self.tokenizer, self.source = tokenizer, source
    ends = [t for t in self.END_TOKENS if tokenizer.token_to_id(t) is not None]
    if not ends:
      raise UserError(f'the tokenizer {source} has none of {", ".join(self.END_TOKENS)}, '
                      'the end-of-text token a language-model corpus ends documents with')
    self.eos_id = tokenizer.token_to_id(ends[0])
    self._unk = getattr(tokenizer.model, 'unk_token', None)

  @classmethod
  def from_folder(cls, folder: str) -> 'HuggingFaceVocab':
    """A Hugging Face tokenizer folder: tokenizer.json, else vocab.json + merges.txt."""
    import tokenizers  # pylint: disable=g-import-not-at-top
    single, merges = os.path.join(folder, 'tokenizer.json'), os.path.join(folder, 'merges.txt')
    try:
      if os.path.isfile(single):
        return cls(tokenizers.Tokenizer.from_file(single), folder)
      if not os.path.isfile(merges):
        raise UserError(f'{folder} holds no Hugging Face tokenizer: expected tokenizer.json, '
                        'or vocab.json and merges.txt (GPT-2\'s)')
      bpe = tokenizers.models.BPE.from_file(os.path.join(folder, 'vocab.json'), merges)
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (the Rust library's own type)
      raise UserError(f'{folder}: its Hugging Face tokenizer could not be read ({e})') from None
    tokenizer = tokenizers.Tokenizer(bpe)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    return cls(tokenizer, folder)

  def __len__(self):
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  def encode(self, text: str) -> list[int]:
    return self.tokenizer.encode(text, add_special_tokens=False).ids

  def encode_many(self, texts) -> list[list[int]]:
    """encode() of each text, on every core."""
    return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

  def decode(self, ids) -> str:
    return self.tokenizer.decode(list(self._until_eos(ids)), skip_special_tokens=False)

  def pieces(self, text: str) -> list[str]:
    return self.tokenizer.encode(text, add_special_tokens=False).tokens

  def id_pieces(self, ids) -> list[str]:
    return [self.tokenizer.id_to_token(i) for i in self._until_eos(ids)]

  def unknown_count(self, text: str) -> int:
    unk = self.tokenizer.token_to_id(self._unk) if self._unk else None
    return 0 if unk is None else self.encode(text).count(unk)


def save(vocab: Vocab, folder: str):
  """Writes the vocabulary into `folder` (vocab.json, and a SentencePiece model's file)."""
  os.makedirs(folder, exist_ok=True)
  if isinstance(vocab, CharVocab):
    spec = {'kind': 'char', 'chars': vocab.itos[len(SPECIALS):], 'fallback': vocab.fallback}
  elif isinstance(vocab, ByteVocab):
    spec = {'kind': 'byte'}
  elif isinstance(vocab, WordVocab):
    spec = {'kind': 'word', 'words': vocab.itos[len(SPECIALS):]}
  elif isinstance(vocab, SentencePieceVocab):
    spec = {'kind': 'sentencepiece', 'model': 'spm.model'}
    with open(os.path.join(folder, 'spm.model.tmp'), 'wb') as f:  # the model as loaded.
      f.write(vocab.sp.serialized_model_proto())
    os.replace(os.path.join(folder, 'spm.model.tmp'), os.path.join(folder, 'spm.model'))
  elif isinstance(vocab, HuggingFaceVocab):
    spec = {'kind': 'huggingface', 'file': 'tokenizer.json'}
    vocab.tokenizer.save(os.path.join(folder, 'tokenizer.json.tmp'))
    os.replace(os.path.join(folder, 'tokenizer.json.tmp'), os.path.join(folder, 'tokenizer.json'))
  else:
    raise TypeError(f'cannot save a {type(vocab).__name__}')
  with open(os.path.join(folder, 'vocab.json.tmp'), 'w', encoding='utf-8') as f:
    json.dump(spec, f, ensure_ascii=False)
  os.replace(os.path.join(folder, 'vocab.json.tmp'), os.path.join(folder, 'vocab.json'))


def load(folder: str) -> Vocab:
  """The vocabulary that save() wrote into `folder`, or a Hugging Face tokenizer
  folder's (its vocab.json maps tokens to ids, or it holds only tokenizer.json)."""
  path = os.path.join(folder, 'vocab.json')
  try:
    if not os.path.isfile(path) and os.path.isfile(os.path.join(folder, 'tokenizer.json')):
      return HuggingFaceVocab.from_folder(folder)
    with open(path, encoding='utf-8') as f:
      spec = json.load(f)
    if not isinstance(spec.get('kind'), str):  # GPT-2's vocab.json: {token: id}.
      return HuggingFaceVocab.from_folder(folder)
    kind = spec['kind']
    if kind == 'char':
      return CharVocab(spec['chars'], spec.get('fallback', ''))
    if kind == 'byte':
      return ByteVocab()
    if kind == 'word':
      return WordVocab(spec['words'])
    if kind == 'sentencepiece':
      return SentencePieceVocab(os.path.join(folder, spec['model']))
    if kind == 'huggingface':
      return HuggingFaceVocab.from_folder(folder)
  except (OSError, ValueError, KeyError, RuntimeError) as e:
    raise UserError(f'could not read the tokenizer in {folder}: {e}') from None
  raise UserError(f'{path}: unknown tokenizer kind {kind!r}')


def fingerprint(vocab: Vocab) -> str:
  """A digest of what the vocabulary maps: equal digests tokenize alike."""
  h = hashlib.sha256(type(vocab).__name__.encode())
  if isinstance(vocab, SentencePieceVocab):
    h.update(vocab.sp.serialized_model_proto())
  elif isinstance(vocab, HuggingFaceVocab):
    h.update(vocab.tokenizer.to_str().encode('utf-8'))
  elif isinstance(vocab, (CharVocab, WordVocab)):
    h.update('\x00'.join(vocab.itos).encode('utf-8'))
    h.update(getattr(vocab, 'fallback', '').encode('utf-8'))
  return h.hexdigest()[:16]
