"""Corpus BLEU and chrF with sacrebleu, on detokenized text."""
import sacrebleu


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
  """sacrebleu BLEU (13a tokenization, cased), lowercased BLEU (what the public
  seq2seq tutorials report), and chrF."""
  refs = [references]
  return {
      'bleu': sacrebleu.corpus_bleu(hypotheses, refs).score,
      'bleu_lowercase': sacrebleu.corpus_bleu(hypotheses, refs, lowercase=True).score,
      'chrf': sacrebleu.corpus_chrf(hypotheses, refs).score,
  }


def by_source_length(hypotheses: list[str], references: list[str], sources: list[str],
                     edges) -> dict[str, float]:
  """BLEU per bucket of source length in words, the x-axis of Bahdanau et al.
  2014, Figure 2. `edges` (ascending, inclusive upper ends) make the buckets
  1-e0, e0+1-e1, ..., e_last+1 and longer. Empty buckets are left out.
  Returns {'bleu_len_<lo>-<hi>': score, ..., 'bleu_len_<lo>+': score}."""
  bounds = [(lo + 1, hi) for lo, hi in zip((0,) + tuple(edges), tuple(edges) + (None,))]
  out = {}
  for lo, hi in bounds:
    idx = [i for i, s in enumerate(sources)
           if lo <= len(s.split()) and (hi is None or len(s.split()) <= hi)]
    if idx:
      out[f'bleu_len_{lo}+' if hi is None else f'bleu_len_{lo}-{hi}'] = sacrebleu.corpus_bleu(
          [hypotheses[i] for i in idx], [[references[i] for i in idx]]).score
  return out
