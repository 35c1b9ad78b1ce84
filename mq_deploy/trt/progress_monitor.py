"""Build progress on stderr through trt.IProgressMonitor (TensorRT 10.0+; the callbacks and their
arguments are those of samples/python/simple_progress_monitor). Plain lines, not a redrawn bar,
so logs and CI output stay readable. Ctrl-C during a build cancels it cleanly: while TensorRT
builds, SIGINT only marks the monitor cancelled (`interrupts_cancel`), step_complete then returns
False and TensorRT stops, and the caller raises KeyboardInterrupt once the builder has returned.
(A KeyboardInterrupt raised inside a callback would be caught by the bindings, which print it and
cancel the build: the user would see "could not build an engine", not an interrupt.)"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager

SHOWN_DEPTH = 1          # top-level phases and their children; deeper ones are TensorRT internals
SLOW_SECONDS = 1.0       # a finished phase is reported when it took at least this long


def make_progress_monitor(trt, label: str, stream=None, show: bool = True):
    """A trt.IProgressMonitor printing `[label] phase ...` lines (none when not `show`: it then only
    carries the cancellation); `.cancelled` stops the build at the next step."""
    out = stream or sys.stderr

    class PhasePrinter(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.cancelled = False
            self._depth: dict[str, int] = {}
            self._start: dict[str, float] = {}

        def _print(self, depth: int, text: str) -> None:
            if show and depth <= SHOWN_DEPTH:
                print(f"[{label}] {'  ' * depth}{text}", file=out, flush=True)

        def phase_start(self, phase_name, parent_phase, num_steps):
            depth = 0 if parent_phase is None else self._depth.get(parent_phase, 0) + 1
            self._depth[phase_name], self._start[phase_name] = depth, time.perf_counter()
            self._print(depth, f"{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return not self.cancelled

        def phase_finish(self, phase_name):
            depth = self._depth.pop(phase_name, 0)
            seconds = time.perf_counter() - self._start.pop(phase_name, time.perf_counter())
            if seconds >= SLOW_SECONDS:
                self._print(depth, f"{phase_name} done in {seconds:.1f} s")

    return PhasePrinter()


@contextmanager
def interrupts_cancel(monitor):
    """Within the block, Ctrl-C (SIGINT) sets `monitor.cancelled` instead of raising. Python runs the
    handler when the main thread next runs bytecode: in the monitor's next callback, whose
    step_complete then stops the build. Outside the main thread signals cannot be handled: no-op."""
    if monitor is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum, frame):
        monitor.cancelled = True

    previous = signal.signal(signal.SIGINT, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
