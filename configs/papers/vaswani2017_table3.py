"""Vaswani et al. 2017, Table 3 (variations on the Transformer), at Multi30k scale.

The sweep is configs/transformer.py's `table3` preset (2 + 2 layers, d_model 128,
4 heads, d_ff 512, 1500 steps of 128 pairs, greedy decoding) and its rows (A)-(E),
each scaled by the paper's ratio to its base: the paper's h = 1, 4, 16, 32 around
a base of 8 become h = 1, 2, 8, 16 around our 4; d_k = 16, 32 (base 64) become
16, 24 (base 32); N = 2, 4, 8 (base 6) become 1, 3, 4 (base 2); d_model 256,
1024 (base 512) become 64, 256 (base 128), with d_ff kept and d_k = d_model / h as
in the paper; d_ff 1024, 4096 (base 2048) become 256, 1024 (base 512). Dropout, label smoothing and learned positions keep the
paper's values.

Our perplexity is per SentencePiece token on Multi30k validation, the paper's
per word-piece on newstest2013, so compare the direction of each change, not
the values.

Run:  python launch.py --reproduce=vaswani2017_table3   (19 points; resumable)
Writes runs/papers/vaswani2017_table3/report.md, sweep.md and sweep.csv.
Not yet measured here.
"""
import os

from research.config import load_config_module

_TRANSFORMER = load_config_module(os.path.join(os.path.dirname(__file__), '..',
                                               'transformer.py'))
ROWS = _TRANSFORMER.TABLE3_ROWS

# (label, our point, paper PPL, paper BLEU), in the paper's order.
_PAPER_ROWS = [('base', {}, 4.92, 25.8)] + [
    (f'({row}) {label}', point, ppl, bleu)
    for row, entries in (
        ('A', [('h=1', 5.29, 24.9), ('h=4', 5.00, 25.5), ('h=16', 4.91, 25.8),
               ('h=32', 5.01, 25.4)]),
        ('B', [('d_k=16', 5.16, 25.1), ('d_k=32', 5.01, 25.4)]),
        ('C', [('N=2', 6.11, 23.7), ('N=4', 5.19, 25.3), ('N=8', 4.88, 25.5),
               ('d_model=256', 5.75, 24.5), ('d_model=1024', 4.66, 26.0),
               ('d_ff=1024', 5.12, 25.4), ('d_ff=4096', 4.75, 26.2)]),
        ('D', [('dropout 0.0', 5.77, 24.6), ('dropout 0.2', 4.95, 25.5),
               ('label smoothing 0.0', 4.67, 25.3), ('label smoothing 0.2', 5.47, 25.7)]),
        ('E', [('learned positions', 4.92, 25.7)]),
    )
    for (label, ppl, bleu), point in zip(entries, ROWS[row])
]

PAPER = dict(
    title='Attention Is All You Need: Table 3, variations on the Transformer',
    authors='Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser and Polosukhin',
    year=2017,
    where='Table 3 (newstest2013 dev perplexity and BLEU); ours: Multi30k de-en validation',
    results=[r for label, point, ppl, bleu in _PAPER_ROWS for r in (
        dict(label=label, point=point, metric='validation/perplexity', paper=ppl),
        dict(label=label, point=point, metric='validation/bleu', paper=bleu),
        dict(label=label, point=point, metric='num_params',
             paper=65e6 if not point else None))],
    notes="""Scaled-down rows: see the config's docstring for the mapping. The paper trained
100k steps of 25k tokens on 4.5M sentence pairs; each point here trains 1500
steps of 128 pairs of Multi30k (29k pairs).""")


def get_config(preset=None):
  del preset
  return _TRANSFORMER.get_config('table3')


def get_sweep(preset=None):
  del preset
  return _TRANSFORMER.get_sweep('table3')
