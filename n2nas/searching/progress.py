"""Live progress of a search: phase, elapsed time against the budget, children scored, best so far.

The search loop owns the clock (its budget includes data preparation and survives ``--resume``), so it tells
:class:`SearchProgress` the elapsed time; between two reports the display only extrapolates from the last one.
On a terminal the status is one line redrawn in place; elsewhere (CI, a log file) it is plain lines: one per
phase change and otherwise at most one per ``interval_s``, never a carriage return.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, TextIO

__all__ = ["ProgressState", "SearchProgress", "format_clock", "format_status"]


@dataclass(frozen=True)
class ProgressState:
    """What the status line shows (one immutable snapshot; every update makes a new one)."""

    phase: str = "starting"
    done: int | None = None
    total: int | None = None
    elapsed_s: float = 0.0
    n_scored: int = 0
    n_failed: int = 0
    best_metric: float | None = None
    best_flops: float | None = None
    metric_name: str | None = None  # what best_metric is (e.g. macro_auroc), shown before its value


def format_clock(seconds: float) -> str:
    """``M:SS`` with unbounded minutes (``75:03``), so a 60-minute budget reads ``60:00``."""
    seconds = max(int(seconds), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


def format_status(state: ProgressState, budget_s: float | None, label: str = "search") -> str:
    """One status line, e.g. ``search | shared training | 12:03 / 60:00 | 48 scored, 2 failed | best F1 at
    F MFLOPs`` (``label`` first; the best metric to three decimals, its FLOPs per record to two)."""
    phase = state.phase
    if state.done is not None and state.total is not None:
        phase = f"{phase} {state.done}/{state.total}"
    elif state.done is not None:
        phase = f"{phase} {state.done}"
    clock = format_clock(state.elapsed_s)
    clock = f"{clock} / {format_clock(budget_s)}" if budget_s is not None else f"{clock} elapsed"
    children = f"{state.n_scored} scored"
    if state.n_failed:
        children += f", {state.n_failed} failed"
    if state.best_metric is None:
        best = "best -"
    else:
        named = f"{state.metric_name} " if state.metric_name else ""
        best = f"best {named}{state.best_metric:.3f}"
        if state.best_flops is not None:
            best += f" at {state.best_flops / 1e6:.2f} MFLOPs"
    return " | ".join((label, phase, clock, children, best))


class SearchProgress:
    """Status display driven by the search loop: :meth:`phase`, :meth:`elapsed`, :meth:`scored`, :meth:`close`.

    ``budget_s`` is the time budget in seconds (None: no time budget, elapsed time only). ``enabled=False``
    (``--quiet``) prints nothing. ``interactive=None`` asks ``stream.isatty()``. On a terminal a daemon thread
    redraws the line about once a second so the clock keeps moving during a long phase, and draws an update
    that arrived too soon after the previous redraw (``ticker=False`` turns it off). ``label`` starts the line
    (searches side by side tell their lines apart by it). ``clock`` is for tests.
    """

    #: seconds between two in-place redraws on a terminal (a few per second at most)
    min_redraw_s = 0.25
    #: a terminal line is redrawn this often even when nothing was reported (the clock moves)
    tick_s = 1.0

    def __init__(self, budget_s: float | None, enabled: bool = True, stream: TextIO | None = None,
                 interactive: bool | None = None, interval_s: float = 30.0, *,
                 clock: Callable[[], float] = time.monotonic, ticker: bool | None = None, label: str = "search"):
        self.budget_s, self.label = budget_s, label
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream  # resolved now so tests may swap sys.stderr
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty()) if isatty is not None else False
        self.interactive = interactive
        self.interval_s = float(interval_s)
        self._clock = clock
        self.state = ProgressState()
        self._reported_at = clock()    # when the loop last told us the elapsed time
        self._drawn_at: float | None = None
        self._drawn_width = 0          # characters of the line now on the terminal (to blank leftovers)
        self._shown: ProgressState | None = None  # the reported state the last line showed
        self._closed = False
        self._lock = threading.Lock()  # the ticker thread and the search loop both draw
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._use_ticker = (interactive if ticker is None else ticker) and enabled and interactive

    # --- what the search loop calls -------------------------------------------------------------------------
    def phase(self, name: str, done: int | None = None, total: int | None = None) -> None:
        """Enter phase ``name`` (or update its ``done``/``total`` counter, e.g. data variants prepared)."""
        changed = name != self.state.phase
        self._update(replace(self.state, phase=name, done=done, total=total), new_phase=changed)

    def elapsed(self, seconds: float) -> None:
        """The search's elapsed time in seconds, as its budget counts it (including time before a resume)."""
        self._reported_at = self._clock()
        self._update(replace(self.state, elapsed_s=float(seconds)))

    def scored(self, n_scored: int, n_failed: int, best_metric: float | None, best_flops: float | None,
               metric_name: str | None = None) -> None:
        """Children scored and failed so far, and the best metric (named ``metric_name``, e.g. macro_auroc) with its
        FLOPs per input (None: none yet)."""
        self._update(replace(self.state, n_scored=int(n_scored), n_failed=int(n_failed), best_metric=best_metric,
                             best_flops=best_flops, metric_name=metric_name or self.state.metric_name))

    def close(self) -> None:
        """Show the final state and end the line; later calls print nothing."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        with self._lock:
            if self._closed or not self.enabled:
                self._closed = True
                return
            self._closed = True
            if self.interactive and self._drawn_width:
                self._emit()  # the final numbers, then end the line so what prints next starts fresh
                self.stream.write("\n")
                self.stream.flush()
            elif not self.interactive and self._shown is not None and self._shown != self.state:
                self._emit()  # something was reported since the last line

    def __enter__(self) -> "SearchProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- drawing ----------------------------------------------------------------------------------------------
    def line(self) -> str:
        """The status line as it would be drawn now."""
        return format_status(self._display_state(), self.budget_s, self.label)

    def _display_state(self) -> ProgressState:
        # Between two reports the clock moves on from the loop's last value (never from our own start time).
        drift = max(self._clock() - self._reported_at, 0.0)
        return replace(self.state, elapsed_s=self.state.elapsed_s + drift)

    def _update(self, state: ProgressState, new_phase: bool = False) -> None:
        with self._lock:
            self.state = state
            if not self.enabled or self._closed:
                return
            since = None if self._drawn_at is None else self._clock() - self._drawn_at
            if self.interactive:
                if since is None or since >= self.min_redraw_s:
                    self._emit()
                self._start_ticker()  # an update too soon after a redraw is drawn by the ticker
            elif since is None or new_phase or since >= self.interval_s:
                self._emit()

    def _start_ticker(self) -> None:
        if self._use_ticker and self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="n2nas-progress", daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.min_redraw_s):
            with self._lock:
                if self._closed:
                    return
                since = self._clock() - (self._drawn_at or 0.0)
                if self._shown != self.state or since >= self.tick_s:
                    self._emit()

    def _emit(self) -> None:
        """Draw the current state (the caller holds the lock)."""
        text = format_status(self._display_state(), self.budget_s, self.label)
        if self.interactive:
            width = shutil.get_terminal_size((100, 24)).columns - 1  # a wrapped line cannot be redrawn by \r
            text = text[:max(width, 20)]
            self.stream.write("\r" + text.ljust(self._drawn_width))
            self._drawn_width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn_at, self._shown = self._clock(), self.state


def score_board(trials: list[dict]) -> tuple[int, int, float | None, float | None]:
    """(children scored ok, failed, best bare metric, FLOPs per 30 s record of that child) for the progress display.

    A screen probe scored beyond the hard limits counts as scored but is never shown as the best: it is no result.
    """
    ok = [t for t in trials if t["status"] == "ok" and t["reward"] is not None]
    failed = sum(1 for t in trials if t["status"] == "failed")
    results = [t for t in ok if "limits_waived" not in t]
    if not results:
        return len(ok), failed, None, None
    best = max(results, key=lambda t: (t["reward"], -t["step"]))
    return len(ok), failed, best.get("metric"), best.get("flops_per_record")

