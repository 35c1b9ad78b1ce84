"""Progress bars for long work (calibration, evaluation, export, build): tqdm on stderr.
MQ_PROGRESS=0 turns them off, MQ_PROGRESS=1 forces them on."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_bar(total=None, desc: str = "", unit: str = "it", disable: bool = False):
    forced = os.environ.get("MQ_PROGRESS")
    if forced is not None:
        disable = forced == "0"
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, dynamic_ncols=True,
                unit_scale=True, leave=False)
