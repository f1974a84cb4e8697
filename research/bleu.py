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
