"""Model evaluation: perplexity and bits per byte; continuation scoring and the lm-eval-harness
adapter (lm_eval_adapter, imported only on demand: lm-eval is the optional `eval` extra)."""

from .perplexity import PerplexityResult, evaluate_perplexity, unigram_bits_per_token
from .text import evaluate_model

__all__ = ["PerplexityResult", "evaluate_perplexity", "unigram_bits_per_token", "evaluate_model"]
