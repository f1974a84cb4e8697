"""Models, registered by name; `config.model.name` picks one."""
from research.models import rnn_attention, rnn_seq2seq, transformer

MODELS = {
    'rnn_attention': rnn_attention.Seq2Seq,   # Bahdanau or Luong attention.
    'rnn_seq2seq': rnn_seq2seq.Seq2Seq,       # one context vector: Sutskever LSTM, Cho GRU.
    'transformer': transformer.TransformerModel,  # Vaswani et al. 2017.
}
