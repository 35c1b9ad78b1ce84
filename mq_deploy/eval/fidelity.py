"""How far a quantized model's next-token distributions moved from the FP model's: KL(FP ‖ q) per
token, averaged per evaluation window.

Perplexity alone cannot rank quantized models that sit within noise of FP: on a text the model was
not trained on, a quantized model can score *below* FP (on the pydoc text, SmoothQuant W4A16 of the
comparison model does, by 0.9 %), which is drift, not quality. KL measures the drift itself: zero
only for the FP model's own distributions, larger for every change, whichever way perplexity moved.

The FP log-probabilities are kept per batch when they fit (a byte-level model's 128 windows × 511
tokens × 256 × 8 bytes is 128 MiB) and recomputed from the FP model per batch otherwise (a 50k-token
vocabulary over the same windows would be 26 GiB)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

CACHE_BYTES = 1 << 30


class FPReference:
    """The FP model's next-token log-probs on the evaluation batches, for `window_kl`."""

    def __init__(self, model, cache_bytes: int = CACHE_BYTES):
        self.model = model
        self.cache_bytes = cache_bytes
        self._cache: dict[int, torch.Tensor] = {}
        self._cached_bytes = 0

    def logprobs(self, key: int, inputs: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """[b, L, V] float64 log-probs of the FP model for the windows `key` (the evaluation's index of
        the first), whose inputs are `inputs` [b, L]. `logits`: the FP model's own logits for it, when the
        caller just computed them (the FP evaluation itself), to keep instead of a second forward."""
        cached = self._cache.get(key)
        if cached is not None:
            if cached.shape[:2] != inputs.shape:
                raise ValueError(f"FP reference batch {key} is {tuple(cached.shape[:2])}, asked for {tuple(inputs.shape)}")
            return cached
        if logits is None:
            with torch.no_grad():
                logits = self.model(inputs)
        lp = fp_logprobs(logits)
        size = lp.numel() * lp.element_size()
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[key] = lp
            self._cached_bytes += size
        return lp


def kl_per_position(reference_logprobs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """[...] KL(FP ‖ q) = Σ_v p_FP(v) (log p_FP(v) - log p_q(v)) at every position (the last dimension is
    the vocabulary or the classes), in nats, float64 throughout: a well-quantized model's KL per token
    is 1e-5 to 1e-4, the size of a float32 log-softmax's rounding summed over the vocabulary (0.1 % off
    at 1.6e-5). The same arithmetic for both sides, so the FP model scores exactly 0.
    `reference_logprobs`: the FP model's float64 log-softmax (`fp_logprobs`); `logits`: the model's."""
    ref = reference_logprobs
    lq = F.log_softmax(logits.double(), dim=-1)
    return (ref.exp() * (ref - lq)).sum(-1)


def fp_logprobs(logits: torch.Tensor) -> torch.Tensor:
    """The reference side of `kl_per_position`: float64 log-probs of the FP model's logits."""
    return F.log_softmax(logits.double(), dim=-1)


def window_kl(reference_logprobs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """[b] mean over each window's tokens of `kl_per_position`."""
    return kl_per_position(reference_logprobs, logits).mean(-1)
