"""Progress bars for long work (calibration, evaluation, export, build): tqdm on stderr.
MQ_PROGRESS=0 turns them off, MQ_PROGRESS=1 forces them on."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_enabled(wanted: bool = True) -> bool:
    """Whether to show progress: MQ_PROGRESS=0/1 decides when set, else `wanted`. The one reader of
    MQ_PROGRESS (tqdm bars here, TensorRT's build monitor in trt/progress_monitor.py)."""
    forced = os.environ.get("MQ_PROGRESS")
    return wanted if forced is None else forced != "0"


def progress_bar(total=None, desc: str = "", unit: str = "it", disable: bool = False):
    return tqdm(total=total, desc=desc, unit=unit, disable=not progress_enabled(not disable), file=sys.stderr,
                dynamic_ncols=True, unit_scale=True, leave=False)
