"""Progress, a time limit and per-phase costs for every export target.

An exporter names its phases and, inside a long phase, how far it is::

    progress = current()
    with progress.phase('trace'):
        for i, layer in enumerate(layers):
            progress.step(f'layer {i + 1}/{len(layers)} {layer.name}')

``export`` activates one ``Progress`` around the target's export (``active(...)``); a target that never calls it
still runs (``current()`` is then a silent one). While a phase runs, a watcher thread samples the resident memory
(the phase's peak) and, once the phase has taken more than ``min_seconds``, prints on ``stream`` (stderr in the
CLI, never stdout, so ``--json`` stays one JSON document) the phase, the step and the time so far.

``timeout``: past that many seconds from the start, ``ExportTimeout`` is raised in the main thread (SIGALRM) or at
the next ``step``; it derives from KeyboardInterrupt, so no toolchain's ``except Exception`` swallows it and every
``finally`` (the temporary project folder) runs. A single call into compiled code (one da4ml solve, one g++ run)
finishes before the exception can be raised.
"""

from __future__ import annotations

import contextlib
import contextvars
import resource
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


class ExportTimeout(KeyboardInterrupt):
    """The export ran past ``--timeout``; raised like Ctrl-C so that the clean-up runs."""

    def __init__(self, seconds: float, phase: str, detail: str) -> None:
        super().__init__(seconds)
        self.seconds, self.phase, self.detail = seconds, phase, detail

    def __str__(self) -> str:
        where = self.phase + (f' ({self.detail})' if self.detail else '')
        return f'stopped by --timeout {self.seconds:g} s during {where or "the start"}'


@dataclass
class PhaseRecord:
    """One finished phase: wall seconds, CPU seconds (this process and the compilers it ran), the resident memory
    at its start and its peak (MiB; the compilers' memory is not included)."""

    name: str
    seconds: float
    cpu_seconds: float
    start_mib: float
    peak_mib: float


def cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its finished children (g++, verilator)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def rss_mib() -> float:
    """The resident memory of this process now (Linux /proc), else its peak so far."""
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Progress:
    """Phases, steps, the time limit and the per-phase records of one export (see the module docstring)."""

    def __init__(
        self,
        label: str = 'export',
        stream: TextIO | None = None,
        timeout: float | None = None,
        min_seconds: float = 1.0,
        interval: float = 10.0,
    ) -> None:
        self.label, self.stream, self.timeout = label, stream, timeout
        self.min_seconds, self.interval = min_seconds, interval
        self.records: list[PhaseRecord] = []
        self._phase = self._detail = ''
        self._start = time.monotonic()
        self._phase_start = self._printed_at = 0.0
        self._printed = ''
        self._peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # ---- what exporters call -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time one phase; print it when it takes longer than ``min_seconds``."""
        outer = (self._phase, self._detail, self._phase_start)
        start_mib = rss_mib()
        with self._lock:
            self._phase, self._detail, self._phase_start, self._peak = name, '', time.monotonic(), start_mib
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - t0
            with self._lock:
                peak = max(self._peak, rss_mib())
                self.records.append(PhaseRecord(name, seconds, cpu_seconds() - cpu0, start_mib, peak))
                self._phase, self._detail, self._phase_start = outer
            if seconds > self.min_seconds and sys.exc_info()[0] is None:
                self._print(f'{name}: done in {seconds:.1f} s (peak memory {peak:.0f} MiB)')

    def step(self, detail: str) -> None:
        """Say how far the current phase is; raises ExportTimeout past the time limit."""
        with self._lock:
            self._detail = detail
        self.check()

    def check(self) -> None:
        if self.timeout is not None and time.monotonic() - self._start > self.timeout:
            raise ExportTimeout(self.timeout, self._phase, self._detail)

    def seconds(self) -> dict[str, float]:
        """Wall seconds per phase (a phase run twice is summed)."""
        out: dict[str, float] = {}
        for r in self.records:
            out[r.name] = out.get(r.name, 0.0) + r.seconds
        return out

    # ---- the watcher ---------------------------------------------------------------------------------------------

    def _print(self, text: str) -> None:
        if self.stream is not None:
            print(f'hgqbridge {self.label}: {text}', file=self.stream, flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            with self._lock:
                self._peak = max(self._peak, rss_mib())
                phase, detail, running = self._phase, self._detail, now - self._phase_start
            if not phase or running <= self.min_seconds:
                continue
            line = f'{phase}' + (f': {detail}' if detail else '')
            if (line != self._printed and now - self._printed_at >= 2.0) or now - self._printed_at >= self.interval:
                self._print(f'{line} ({running:.0f} s)')
                self._printed, self._printed_at = line, now

    def _alarm(self, signum: int, frame: object) -> None:
        raise ExportTimeout(self.timeout or 0.0, self._phase, self._detail)

    @contextlib.contextmanager
    def running(self) -> Iterator[Progress]:
        """Start the watcher (and the SIGALRM time limit, in the main thread) for the duration of the block."""
        self._start = time.monotonic()
        watcher = threading.Thread(target=self._watch, name='hgqbridge-progress', daemon=True)
        watcher.start()
        alarm = self.timeout is not None and threading.current_thread() is threading.main_thread()
        previous: Any = None
        if alarm and self.timeout is not None:
            previous = signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            yield self
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            self._stop.set()
            watcher.join()


_ACTIVE: contextvars.ContextVar[Progress | None] = contextvars.ContextVar('hgqbridge_progress', default=None)


def current() -> Progress:
    """The progress of the export running in this context, or a silent one."""
    return _ACTIVE.get() or Progress()


@contextlib.contextmanager
def active(progress: Progress | None) -> Iterator[Progress]:
    """Make ``progress`` (None: a silent one) what ``current()`` returns, and run its watcher and time limit."""
    progress = progress or Progress()
    token = _ACTIVE.set(progress)
    try:
        with progress.running():
            yield progress
    finally:
        _ACTIVE.reset(token)
