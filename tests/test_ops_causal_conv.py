import torch
import torch.nn.functional as F

from mq_deploy.ops import causal_conv1d


def test_matches_padded_conv_and_carries_state():
    torch.manual_seed(0)
    b, L, d, k = 2, 11, 6, 4
    x, w, bias = torch.randn(b, L, d, dtype=torch.float64), torch.randn(d, 1, k, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    # independent definition: nn.Conv1d-style padding k-1 then keep the first L outputs
    expected = F.conv1d(x.transpose(1, 2), w, bias, padding=k - 1, groups=d)[:, :, :L].transpose(1, 2)
    y, state = causal_conv1d(x, w, bias)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(state, x[:, -(k - 1):].transpose(1, 2))
    y1, s1 = causal_conv1d(x[:, :5], w, bias)
    y2, _ = causal_conv1d(x[:, 5:], w, bias, s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), expected)
    # one token at a time, as in decode
    state, steps = None, []
    for t in range(L):
        yt, state = causal_conv1d(x[:, t:t + 1], w, bias, state)
        steps.append(yt)
    torch.testing.assert_close(torch.cat(steps, 1), expected)
