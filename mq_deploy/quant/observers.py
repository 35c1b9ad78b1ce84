"""Observers: running statistics of one activation, fed batch by batch during calibration.

All keep float64 accumulators and reject NaN/inf with an error naming the activation point, so a
broken model or bad calibration data is caught where it happens, not as a NaN scale later. Each
reads the activation in its own dtype (min, max and |max| are exact in any float type; only the
covariance's sums need float64 inputs) and checks its own reduced result for NaN/inf, which NaN and
inf always reach: no extra pass over the activation and no float64 copy of it unless needed.
"""

from __future__ import annotations

import torch

from ..errors import MQDeployError


def _check_finite(x: torch.Tensor, where: str) -> None:
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise MQDeployError(f"{bad} NaN/inf values in the activation at {where} during calibration; check the "
                            "calibration data and the model weights (an FP16 overflow shows up like this: "
                            "calibrate in float32)")


class Observer:
    name = "observer"

    def __init__(self, where: str = "?"):
        self.where = where
        self.count = 0           # tokens (rows) seen

    def update(self, x: torch.Tensor) -> None:
        rows = x.detach().reshape(-1, x.shape[-1])
        summary = self._update(rows)
        if not torch.isfinite(summary).all():
            _check_finite(x, self.where)
        self.count += rows.shape[0]

    def _update(self, rows: torch.Tensor) -> torch.Tensor:
        """Fold `rows` [tokens, channels] (the activation's dtype) into the statistics; return a small
        tensor that holds a NaN or inf whenever `rows` does."""
        raise NotImplementedError

    def _require_data(self):
        if self.count == 0:
            raise MQDeployError(f"no calibration data reached {self.where}; give more calibration text")


class MinMaxObserver(Observer):
    """Per-tensor min and max."""

    name = "minmax"

    def __init__(self, where="?"):
        super().__init__(where)
        self.lo, self.hi = None, None

    def _update(self, rows):
        lo, hi = (v.double() for v in torch.aminmax(rows))
        self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)
        return torch.stack([lo, hi])

    def range(self):
        self._require_data()
        return self.lo, self.hi


class ChannelAbsMaxObserver(Observer):
    """Per-channel (last axis) max |x|: the activation side of SmoothQuant's formula."""

    name = "channel_absmax"

    def __init__(self, where="?"):
        super().__init__(where)
        self.absmax = None

    def _update(self, rows):
        m = rows.abs().amax(dim=0).double()
        self.absmax = m if self.absmax is None else torch.maximum(self.absmax, m)
        return m

    def value(self) -> torch.Tensor:
        self._require_data()
        return self.absmax


class CovarianceObserver(Observer):
    """Mean-centred, unbiased covariance of the channels (for the KLT), accumulated exactly in
    float64 as sums, so any number of batches gives the same result as one big batch."""

    name = "covariance"

    def __init__(self, where="?"):
        super().__init__(where)
        self.sum = None
        self.gram = None

    def _update(self, rows):
        rows = rows.double()
        s, g = rows.sum(0), rows.T @ rows
        self.sum = s if self.sum is None else self.sum + s
        self.gram = g if self.gram is None else self.gram + g
        return s

    def release(self) -> None:
        """Free the sums once they have been used (GPTQ: one layer's Hessians at a time)."""
        self.sum = self.gram = None

    def second_moment(self) -> torch.Tensor:
        """E[x xᵀ] (not centred): GPTQ's Hessian of a linear's squared output error, up to a factor."""
        self._require_data()
        return self.gram / self.count

    def covariance(self) -> torch.Tensor:
        self._require_data()
        if self.count < 2:
            raise MQDeployError(f"only {self.count} token reached {self.where}; a covariance needs more calibration data")
        mean = self.sum / self.count
        return (self.gram - self.count * torch.outer(mean, mean)) / (self.count - 1)


class CaptureObserver(Observer):
    """Keeps the activation itself, [tokens, channels] in its own dtype, until `take()`: for a
    statistic that needs a transform not known yet when the activation goes by (a recipe's range
    replay, quant/recipes/mambaquant.py)."""

    name = "capture"

    def __init__(self, where="?"):
        super().__init__(where)
        self.rows = []

    def _update(self, rows):
        self.rows.append(rows.clone())      # the activation's storage may be reused once the hook returns
        return torch.stack(torch.aminmax(rows))

    def take(self) -> torch.Tensor:
        """Every row seen so far, in order, and forget them."""
        self._require_data()
        rows, self.rows = torch.cat(self.rows), []
        return rows


class HistogramObserver(Observer):
    """Per-tensor histogram of x for percentile ranges, with no sample-size limit (unlike
    torch.quantile's 16M-element cap): 2048 bins over a symmetric range that doubles when data
    falls outside it; counts are merged into the wider bins exactly (bin edges nest)."""

    name = "histogram"

    def __init__(self, where="?", bins: int = 2048):
        super().__init__(where)
        self.bins = bins
        self.limit = None           # histogram covers [-limit, limit]
        self.hist = torch.zeros(bins, dtype=torch.float64)
        self.lo, self.hi = None, None

    def _grow(self, needed: float) -> None:
        while self.limit < needed:
            # halving the resolution: bin pairs merge, then the counts sit in the middle half
            merged = self.hist.view(-1, 2).sum(1)
            pad = torch.zeros(self.bins // 4, dtype=torch.float64, device=self.hist.device)
            self.hist = torch.cat([pad, merged, pad])
            self.limit *= 2

    def _update(self, rows):
        flat = rows.flatten()
        lo, hi = (v.double() for v in torch.aminmax(flat))
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            return torch.stack([lo, hi])
        self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)
        needed = max(abs(lo.item()), abs(hi.item()), 1e-12)
        if self.limit is None:
            self.limit = needed
            self.hist = self.hist.to(rows.device)      # accumulate where the activations are
        self._grow(needed)
        self.hist += torch.histc(flat, bins=self.bins, min=-self.limit, max=self.limit).double()
        return torch.stack([lo, hi])

    def percentile_range(self, percentile: float):
        """(lo, hi) clipping (100 - percentile)% of the mass off each tail, never wider than min/max."""
        self._require_data()
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        if percentile == 100.0:
            return self.lo, self.hi
        cdf = torch.cumsum(self.hist, 0) / self.hist.sum()
        tail = 1.0 - percentile / 100.0
        width = 2 * self.limit / self.bins
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float64, device=cdf.device)  # noqa: E731
        lo_bin = int(torch.searchsorted(cdf, as_tensor(tail)))
        hi_bin = int(torch.searchsorted(cdf, as_tensor(1.0 - tail)))
        lo = as_tensor(-self.limit + lo_bin * width)
        hi = as_tensor(-self.limit + (hi_bin + 1) * width)
        return torch.maximum(lo, self.lo), torch.minimum(hi, self.hi)


OBSERVERS = {cls.name: cls for cls in (MinMaxObserver, ChannelAbsMaxObserver, CovarianceObserver, HistogramObserver)}
