"""Model evaluation: perplexity and bits per byte."""

from .perplexity import PerplexityResult, evaluate_perplexity, unigram_bits_per_token
from .text import evaluate_model

__all__ = ["PerplexityResult", "evaluate_perplexity", "unigram_bits_per_token", "evaluate_model"]
