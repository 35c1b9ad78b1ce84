"""Causal depthwise 1-D convolution over token-major activations, with an explicit carried state."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  conv_state: torch.Tensor | None = None):
    """y_t = bias + sum_k weight[:, k] * x_{t-K+1+k}, per channel.

    x: [batch, L, D]; weight: [D, 1, K] (nn.Conv1d layout) or [D, K]; conv_state: [batch, D, K-1],
    the K-1 inputs before x[:, 0] (zeros when None, i.e. the start of a sequence).
    Returns (y [batch, L, D], new_conv_state [batch, D, K-1]): the state is the last K-1 inputs,
    which is what the next call (a decode step, or the next chunk) needs.
    """
    weight = weight.reshape(weight.shape[0], -1)
    dim, kernel = weight.shape
    xt = x.transpose(1, 2)                                             # [b, D, L]
    if conv_state is None:
        conv_state = xt.new_zeros(xt.shape[0], dim, kernel - 1)
    padded = torch.cat([conv_state.to(xt.dtype), xt], dim=-1)           # [b, D, K-1+L]
    y = F.conv1d(padded, weight.unsqueeze(1).to(xt.dtype), None if bias is None else bias.to(xt.dtype),
                 groups=dim)
    return y.transpose(1, 2), padded[:, :, padded.shape[-1] - (kernel - 1):]
