"""Model evaluation: perplexity and bits per byte."""

from .perplexity import PerplexityResult, evaluate_perplexity, unigram_bits_per_token

__all__ = ["PerplexityResult", "evaluate_perplexity", "unigram_bits_per_token"]
