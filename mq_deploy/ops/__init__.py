"""Reference operators in plain PyTorch: the selective scan and the causal depthwise conv."""

from .causal_conv import causal_conv1d
from .selective_scan import (SCAN_IMPLS, selective_scan, selective_scan_fused, selective_scan_chunked,
                             selective_scan_ref)

__all__ = ["causal_conv1d", "selective_scan", "selective_scan_ref", "selective_scan_fused",
           "selective_scan_chunked", "SCAN_IMPLS"]
