"""Build progress on stderr through trt.IProgressMonitor (TensorRT 10.0+; the callbacks and their
arguments are those of samples/python/simple_progress_monitor). Plain lines, not a redrawn bar,
so logs and CI output stay readable. Ctrl-C during a build cancels it cleanly: step_complete
returns False and TensorRT stops."""

from __future__ import annotations

import sys
import time

SHOWN_DEPTH = 1          # top-level phases and their children; deeper ones are TensorRT internals
SLOW_SECONDS = 1.0       # a finished phase is reported when it took at least this long


def make_progress_monitor(trt, label: str, stream=None):
    """A trt.IProgressMonitor printing `[label] phase ...` lines; `.cancelled` is set by Ctrl-C."""
    out = stream or sys.stderr

    class PhasePrinter(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.cancelled = False
            self._depth: dict[str, int] = {}
            self._start: dict[str, float] = {}

        def _print(self, depth: int, text: str) -> None:
            if depth <= SHOWN_DEPTH:
                print(f"[{label}] {'  ' * depth}{text}", file=out, flush=True)

        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                depth = 0 if parent_phase is None else self._depth.get(parent_phase, 0) + 1
                self._depth[phase_name], self._start[phase_name] = depth, time.perf_counter()
                self._print(depth, f"{phase_name} ({num_steps} steps)")
            except KeyboardInterrupt:
                self.cancelled = True     # only step_complete can stop the build

        def step_complete(self, phase_name, step):
            try:
                return not self.cancelled
            except KeyboardInterrupt:
                self.cancelled = True
                return False

        def phase_finish(self, phase_name):
            try:
                depth = self._depth.pop(phase_name, 0)
                seconds = time.perf_counter() - self._start.pop(phase_name, time.perf_counter())
                if seconds >= SLOW_SECONDS:
                    self._print(depth, f"{phase_name} done in {seconds:.1f} s")
            except KeyboardInterrupt:
                self.cancelled = True

    return PhasePrinter()
