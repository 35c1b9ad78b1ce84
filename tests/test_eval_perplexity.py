import math

import pytest
import torch
import torch.nn.functional as F

from mq_deploy.errors import MQDeployError
from mq_deploy.eval import evaluate_perplexity, unigram_bits_per_token
from mq_deploy.models import MambaConfig, MambaLM


def test_perplexity_equals_direct_cross_entropy_of_transformers(hf_mamba_factory):
    hf = hf_mamba_factory(vocab=256)
    ours = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    ours.load_state_dict(hf.state_dict())
    ids = torch.randint(0, 256, (3 * 20 + 7,), generator=torch.Generator().manual_seed(0))
    result = evaluate_perplexity(ours, ids, total_bytes=ids.numel(), seq_len=20, batch_size=2, progress=False)
    # independent: transformers' logits, window by window, mean NLL over tokens 2..20 of each window
    with torch.no_grad():
        windows = ids[:60].view(3, 20)
        logits = hf(windows).logits[:, :-1]
        nll = F.cross_entropy(logits.reshape(-1, 256), windows[:, 1:].reshape(-1)).item()
    assert result.scored_tokens == 3 * 19
    assert result.nll_per_token == pytest.approx(nll, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(nll), rel=1e-5)
    # one byte per token: bits per byte is the mean NLL in bits
    assert result.bits_per_byte == pytest.approx(nll / math.log(2), rel=1e-5)


def test_max_tokens_and_too_short_text(hf_mamba_factory):
    hf = hf_mamba_factory(vocab=256)
    ours = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    ours.load_state_dict(hf.state_dict())
    ids = torch.randint(0, 256, (100,))
    assert evaluate_perplexity(ours, ids, 100, seq_len=10, max_tokens=40, progress=False).scored_tokens == 4 * 9
    with pytest.raises(MQDeployError, match="5 tokens, fewer than one window of --seq-len 10"):
        evaluate_perplexity(ours, ids[:5], 5, seq_len=10, progress=False)
    with pytest.raises(MQDeployError, match="a window needs at least 2 tokens"):
        evaluate_perplexity(ours, ids, 100, seq_len=1, progress=False)


def test_kl_to_the_fp_model_against_scipy(hf_mamba_factory):
    """KL(FP ‖ q) per window against scipy's relative entropy of transformers' softmax (float64), for a
    perturbed copy of the model; zero for the FP model itself; the same whether the FP log-probs are
    kept or recomputed per batch."""
    from scipy.special import rel_entr, softmax

    from mq_deploy.eval.fidelity import FPReference
    hf = hf_mamba_factory(vocab=256)
    fp = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    fp.load_state_dict(hf.state_dict())
    q = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    torch.manual_seed(0)
    q.load_state_dict({k: v + 0.1 * torch.randn_like(v) for k, v in hf.state_dict().items()})
    ids = torch.randint(0, 256, (5 * 16,), generator=torch.Generator().manual_seed(1))
    reference = FPReference(fp)
    own = evaluate_perplexity(fp, ids, None, seq_len=16, batch_size=2, progress=False, reference=reference)
    assert own.window_kl == [0.0] * 5 and own.kl_per_token == 0.0
    result = evaluate_perplexity(q, ids, None, seq_len=16, batch_size=2, progress=False, reference=reference)
    recomputed = evaluate_perplexity(q, ids, None, seq_len=16, batch_size=2, progress=False,
                                     reference=FPReference(fp, cache_bytes=0))
    with torch.no_grad():
        windows = ids.view(5, 16)[:, :-1]
        p_fp = softmax(hf(windows).logits.double().numpy(), axis=-1)
        p_q = softmax(q(windows).double().numpy(), axis=-1)
    expected = rel_entr(p_fp, p_q).sum(-1).mean(-1)
    assert min(expected) > 1e-4                      # the perturbation is visible
    assert result.window_kl == pytest.approx(expected.tolist(), rel=1e-4)
    assert result.kl_per_token == pytest.approx(expected.mean(), rel=1e-4)
    assert recomputed.window_kl == pytest.approx(result.window_kl, rel=1e-9)
    assert evaluate_perplexity(q, ids, None, seq_len=16, progress=False).window_kl is None
    # the FP log-probs of each window against the FP model run on it alone: the same KL
    one_by_one = evaluate_perplexity(q, ids, None, seq_len=16, batch_size=1, progress=False,
                                     reference=FPReference(fp))
    assert one_by_one.window_kl == pytest.approx(result.window_kl, rel=1e-6)


def test_kl_per_position_resolves_tiny_kl_against_scipy():
    """The one KL primitive (perplexity windows, mixed-precision sensitivities and the vision benchmark
    all use it) at class logits whose KL is ~1e-9, below float32's resolution of a log-probability:
    scipy's relative entropy of float64 softmaxes, per position."""
    from scipy.special import rel_entr, softmax

    from mq_deploy.eval.fidelity import fp_logprobs, kl_per_position
    g = torch.Generator().manual_seed(3)
    fp = torch.randn(7, 10, generator=g)
    q = fp + 1e-4 * torch.randn(7, 10, generator=g, dtype=torch.float64).float()
    expected = rel_entr(softmax(fp.double().numpy(), -1), softmax(q.double().numpy(), -1)).sum(-1)
    assert expected.max() < 1e-7
    got = kl_per_position(fp_logprobs(fp), q)
    assert got.dtype == torch.float64 and got.shape == (7,)
    assert got.numpy() == pytest.approx(expected, rel=1e-6, abs=1e-15)
    assert kl_per_position(fp_logprobs(fp), fp).abs().max() == 0


def test_unigram_entropy_by_hand():
    assert unigram_bits_per_token([7, 7, 7, 7]) == 0.0
    assert unigram_bits_per_token([1, 2]) == pytest.approx(1.0)
    p = [2 / 3, 1 / 3]
    assert unigram_bits_per_token([5, 5, 9]) == pytest.approx(-sum(q * math.log2(q) for q in p))
