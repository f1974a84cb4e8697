"""Character vocabularies with padding, begin/end of sequence and unknown."""
import numpy as np

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ('<pad>', '<s>', '</s>', '<unk>')


class CharVocab:
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
    out = []
    for i in ids:
      i = int(i)
      if i == EOS:
        break
      if i >= len(SPECIALS):
        out.append(self.itos[i])
      elif i == UNK:
        out.append('?')
    return ''.join(out)

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
