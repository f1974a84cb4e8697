"""seqlab: a JAX functional research framework for sequence models."""
