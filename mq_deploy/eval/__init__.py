"""Model evaluation: perplexity and bits per byte, continuation scoring and greedy generation (the
lm-eval-harness adapter built on them is mq_deploy.lm_eval: lm-eval is the optional `eval` extra)."""

from .perplexity import PerplexityResult, evaluate_perplexity, unigram_bits_per_token
from .text import evaluate_model

__all__ = ["PerplexityResult", "evaluate_perplexity", "unigram_bits_per_token", "evaluate_model"]
