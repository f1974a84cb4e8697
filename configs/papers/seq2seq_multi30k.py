"""The context vector vs attention on Multi30k de -> en (test2016).

Two results from one sweep of configs/seq2seq.py presets:
- the public seq2seq tutorial table (bentrevett/pytorch-seq2seq, notebooks 1-3:
  lowercased BLEU 13.8 LSTM, 20.6 GRU with context, 28.3 attention);
- Bahdanau et al. 2014, Figure 2: BLEU by source length, one line per model.
  The paper's claim is the shape: the encoder-decoder that squeezes the source
  into one vector loses BLEU on long sentences, attention does not.

Run:  python launch.py --reproduce=seq2seq_multi30k   (three 30-35 minute runs on 2 CPU cores)
Writes runs/papers/seq2seq_multi30k/report.md and bleu_by_length.png.
Expected (lowercased test2016 BLEU, 2 CPU cores): LSTM 18.33, GRU with context 25.54,
attention 36.89.
"""
from research.config import shipped_config

_SEQ2SEQ = shipped_config('seq2seq')

# Each point turns the bahdanau preset into another preset: the same data, sizes and schedule.
_LONGER = {'model.dropout': 0.3, 'train.steps': 2200, 'eval.every': 1100, 'eval.beam_size': 5}
LSTM = {'model.name': 'rnn_seq2seq', 'model.rnn': 'lstm', **_LONGER}
GRU_CONTEXT = {'model.name': 'rnn_seq2seq', 'model.rnn': 'gru_context', **_LONGER}
ATTENTION = {'model.attention': 'bahdanau'}

PAPER = dict(
    title='The context vector vs attention on Multi30k: the seq2seq tutorial table and '
          'Bahdanau et al. 2014 Figure 2',
    authors='Ben Trevett (pytorch-seq2seq tutorials); Bahdanau, Cho and Bengio',
    year=2014,
    where='tutorial notebooks 1-3 (test BLEU); paper Figure 2 (BLEU by sentence length)',
    results=[
        dict(label='LSTM encoder-decoder (Sutskever)', point=LSTM,
             metric='test/bleu_lowercase', paper=13.8),
        dict(label='GRU, context at every step (Cho)', point=GRU_CONTEXT,
             metric='test/bleu_lowercase', paper=20.6),
        dict(label='GRU + additive attention (Bahdanau)', point=ATTENTION,
             metric='test/bleu_lowercase', paper=28.3),
    ],
    curves=[dict(prefix='test/bleu_len_', file='bleu_by_length.png',
                 xlabel='source sentence length (words)', ylabel='test2016 BLEU',
                 title='Multi30k de-en: BLEU by source length')],
    notes="""The tutorial's numbers are lowercased BLEU with its own word tokenization, 10
epochs of 29k pairs; seqlab's are sacrebleu on detokenized text with a SentencePiece BPE
vocabulary of 8000, 1800 steps of 128 pairs (about 8 epochs) and greedy decoding
for the attention model; the models without attention train 2200 steps with
dropout 0.3 and decode with beam 5 (with the attention model's recipe the LSTM
measured 14.06).
Figure 2 of the paper is WMT'14 English-French with sentences up to 60 words;
Multi30k sentences are short (test2016: 1-30 source words, mostly 6-14), so the
curve spans a much shorter range.""")


def get_config(preset=None):
  del preset
  return _SEQ2SEQ.get_config('bahdanau')


def get_sweep(preset=None):
  del preset
  return [LSTM, GRU_CONTEXT, ATTENTION]
