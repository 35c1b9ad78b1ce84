"""Build progress on stderr through trt.IProgressMonitor (TensorRT 10.0+; the callbacks and their
arguments are those of samples/python/simple_progress_monitor). Plain lines, not a redrawn bar,
so logs and CI output stay readable.

Ctrl-C during a build cancels it cleanly. TensorRT may call the monitor from its own threads, and
Python runs signal handlers only in the main thread, which sits in the builder until it returns; so
while TensorRT builds (`interrupts_cancel`), SIGINT also writes to a wakeup socket (the interpreter's
C-level handler does that in whatever thread takes the signal), step_complete polls it from any
thread and returns False, TensorRT stops, and the caller raises KeyboardInterrupt once the builder
has returned. (A KeyboardInterrupt raised inside a callback would be caught by the bindings, which
print it and cancel the build: the user would see "could not build an engine", not an interrupt.)"""

from __future__ import annotations

import signal
import socket
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
            self.interrupt = None       # an InterruptWatch while a build runs
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
            if not self.cancelled and self.interrupt is not None and self.interrupt.pending():
                self.cancelled = True
            return not self.cancelled

        def phase_finish(self, phase_name):
            depth = self._depth.pop(phase_name, 0)
            seconds = time.perf_counter() - self._start.pop(phase_name, time.perf_counter())
            if seconds >= SLOW_SECONDS:
                self._print(depth, f"{phase_name} done in {seconds:.1f} s")

    return PhasePrinter()


class InterruptWatch:
    """SIGINT seen through a wakeup socket: `pending()` is thread-safe and needs no Python signal handler
    to have run (the main thread may be inside TensorRT)."""

    def __init__(self):
        self._read, self._write = socket.socketpair()
        for end in (self._read, self._write):
            end.setblocking(False)
        self._seen = False

    def pending(self) -> bool:
        if not self._seen:
            try:
                self._seen = bool(self._read.recv(64))
            except (BlockingIOError, InterruptedError):
                pass
        return self._seen

    def close(self) -> None:
        self._read.close()
        self._write.close()


@contextmanager
def interrupts_cancel(monitor):
    """Within the block, Ctrl-C (SIGINT) cancels the build through `monitor` instead of raising: the
    wakeup socket tells step_complete in any thread, and the Python handler (when the main thread runs
    a callback) sets `monitor.cancelled`. Outside the main thread signals cannot be set up: no-op."""
    if monitor is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum, frame):
        monitor.cancelled = True

    watch = InterruptWatch()
    previous = signal.signal(signal.SIGINT, cancel)
    previous_fd = signal.set_wakeup_fd(watch._write.fileno(), warn_on_full_buffer=False)
    monitor.interrupt = watch
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        # None: the previous handler was not installed from Python; the default one is what Python had
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        monitor.cancelled = monitor.cancelled or watch.pending()
        monitor.interrupt = None
        watch.close()
