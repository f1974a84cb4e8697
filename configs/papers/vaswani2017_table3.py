"""Vaswani et al. 2017, Table 3 (variations on the Transformer), at Multi30k scale.

The sweep is configs/transformer.py's `table3` preset (2 + 2 layers, d_model 128,
4 heads, d_ff 512, a 4000-piece vocabulary, 800 steps of 128 pairs) and its rows (A)-(E), mapped onto it:
- (A) h = 1, 4, 16, 32 around the paper's 8 -> h = 1, 2, 8, 16 around the base's 4
  (d_k = d_v = d_model / h, as in the paper);
- (B) d_k = 16, 32 (a quarter and half of 64) -> 8, 16 (of 32);
- (C) N = 2, 4, 8 around 6 -> N = 1, 3, 4 around 2; d_model 256, 1024 (half and
  double of 512) -> 64, 256 with d_ff kept, d_k = d_model / h and the learning
  rate following d_model^-0.5; d_ff 1024, 4096 -> 256, 1024;
- (D) dropout 0.0, 0.2 and label smoothing 0.0, 0.2, and (E) learned positions,
  at the paper's values.
The paper decoded with beam 4 and length penalty 0.6; these points decode
greedily to keep the sweep within 3 hours on 2 CPU cores.

seqlab's perplexity is per SentencePiece token on Multi30k validation, the paper's
per word-piece on newstest2013, so compare the direction of each change, not
the values.

Run:  python launch.py --reproduce=vaswani2017_table3   (19 points; resumable)
Writes runs/papers/vaswani2017_table3/report.md, sweep.md and sweep.csv.
Measured (2 CPU cores, 2026-11-26): 2 h 3 min 37 s for the 19 points; base dev
perplexity 11.08, dev BLEU 27.27, test BLEU 27.86. Width helps (d_model 64 /
128 / 256: BLEU 22.3 / 27.3 / 30.5), depth past 2 post-LN layers hurts within
800 steps, dropout hurts while the model underfits, label smoothing trades
perplexity for BLEU as in the paper; the table and the reading of each row are
in docs/benchmarks.md and docs/vaswani2017_table3_report.md.
"""
from research.config import shipped_config

_TRANSFORMER = shipped_config('transformer')
ROWS = _TRANSFORMER.TABLE3_ROWS

# (label, seqlab's point, paper PPL, paper BLEU, paper params in millions or None), in the
# paper's order; rows (A), (D) and (E) keep the base's 65M.
_PAPER_ROWS = [('base', {}, 4.92, 25.8, 65)] + [
    (f'({row}) {label}', point, ppl, bleu, params)
    for row, entries in (
        ('A', [('h=1', 5.29, 24.9, None), ('h=4', 5.00, 25.5, None),
               ('h=16', 4.91, 25.8, None), ('h=32', 5.01, 25.4, None)]),
        ('B', [('d_k=16', 5.16, 25.1, 58), ('d_k=32', 5.01, 25.4, 60)]),
        ('C', [('N=2', 6.11, 23.7, 36), ('N=4', 5.19, 25.3, 50), ('N=8', 4.88, 25.5, 80),
               ('d_model=256', 5.75, 24.5, 28), ('d_model=1024', 4.66, 26.0, 168),
               ('d_ff=1024', 5.12, 25.4, 53), ('d_ff=4096', 4.75, 26.2, 90)]),
        ('D', [('dropout 0.0', 5.77, 24.6, None), ('dropout 0.2', 4.95, 25.5, None),
               ('label smoothing 0.0', 4.67, 25.3, None),
               ('label smoothing 0.2', 5.47, 25.7, None)]),
        ('E', [('learned positions', 4.92, 25.7, None)]),
    )
    for (label, ppl, bleu, params), point in zip(entries, ROWS[row])
]

PAPER = dict(
    title='Attention Is All You Need: Table 3, variations on the Transformer',
    authors='Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser and Polosukhin',
    year=2017,
    where='Table 3 (newstest2013 dev perplexity and BLEU); seqlab: Multi30k de-en validation',
    results=[r for label, point, ppl, bleu, params in _PAPER_ROWS for r in (
        dict(label=label, point=point, metric='validation/perplexity', paper=ppl),
        dict(label=label, point=point, metric='validation/bleu', paper=bleu),
        dict(label=label, point=point, metric='num_params', scale=1e-6, paper=params))],
    notes="""num_params is in millions. Scaled-down rows: see the config's docstring for the
mapping; the paper's rows (A), (D) and (E) list no parameter count. The paper trained
100k steps of 25k tokens on 4.5M sentence pairs; each point here trains 800
steps of 128 pairs of Multi30k (29k pairs).""")


def get_config(preset=None):
  del preset
  return _TRANSFORMER.get_config('table3')


def get_sweep(preset=None):
  del preset
  return _TRANSFORMER.get_sweep('table3')
