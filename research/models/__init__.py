"""Models, registered by name; `config.model.name` picks one."""
from research.models import rnn_attention

MODELS = {
    'rnn_attention': rnn_attention.Seq2Seq,
}
