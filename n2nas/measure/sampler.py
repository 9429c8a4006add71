"""Background power sampler: one thread reading NVML, RAPL and psutil, writing ``power.csv`` and TensorBoard.

The enerGyPU idea (sample power and utilisation while a workload runs, then integrate) without shell tools:
libraries are read in-process, every row is flushed as it is written, and :meth:`PowerSampler.stop` ends the
thread at once (an Event, not a sleep) and closes its files. Power is only ever read from a counter or NVML;
with neither, the power columns stay empty and :meth:`PowerSampler.joules` returns ``None``.
"""
from __future__ import annotations

import bisect
import csv
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from n2nas.measure.energy import NVMLMeter, RAPLMeter


class PowerSampler:
    """Samples every ``interval_s`` seconds in a daemon thread (also usable by calling :meth:`sample`).

    ``rapl`` / ``gpu`` are optional meters used for power; psutil always gives CPU utilisation and memory.
    Each power sample is the mean power since the previous sample (RAPL: counter difference / time), so the
    integral over a window is exact at sample boundaries.
    """

    def __init__(self, csv_path: str | Path, tensorboard_dir: str | Path | None = None, interval_s: float = 1.0,
                 rapl: RAPLMeter | None = None, gpu: NVMLMeter | None = None,
                 clock: Callable[[], float] = time.time, history: int = 100_000):
        import psutil

        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.csv_path, self.tb_dir, self.interval_s = Path(csv_path), tensorboard_dir, float(interval_s)
        self.rapl, self.gpu, self.clock = rapl, gpu, clock
        self._psutil, self._process = psutil, psutil.Process()
        self.columns = ["time", "cpu_util_pct", "mem_used_pct", "rss_mb"]
        if rapl is not None:
            self.columns.append("cpu_power_w")
        if gpu is not None:
            self.columns += ["gpu_power_w", "gpu_util_pct", "gpu_mem_mb"]
        self.columns += ["power_w", "energy_j"]
        self._times: deque[float] = deque(maxlen=history)
        self._powers: deque[float] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file = self._writer = self._tb = None
        self._last: tuple[float, Any] | None = None
        self._energy, self._n = 0.0, 0

    @property
    def has_power(self) -> bool:
        """Whether any power source is sampled."""
        return self.rapl is not None or self.gpu is not None

    def start(self) -> "PowerSampler":
        """Open ``power.csv`` (appending when its header matches) and start the thread."""
        if self._thread is not None:
            return self
        self._open()
        self._psutil.cpu_percent(None)  # the first call only sets psutil's reference point
        self._thread = threading.Thread(target=self._run, name="n2nas-power-sampler", daemon=True)
        self._thread.start()
        return self

    def _open(self) -> None:
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        path = self.csv_path
        k = 0
        while path.exists() and path.read_text().split("\n", 1)[0] != ",".join(self.columns):
            k += 1  # resumed on a machine with other sources: never mix two column sets in one file
            path = self.csv_path.with_name(f"{self.csv_path.stem}-{k}{self.csv_path.suffix}")
        new = not path.exists()
        self._file = open(path, "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(self.columns)
            self._file.flush()
        if self.tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.tb_dir))  # its own writer: no shared state with the search thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a failed read must not kill the search; skip this sample
                pass
            self._stop.wait(self.interval_s)

    def sample(self) -> dict[str, Any]:
        """Take one sample now: append it to the CSV, TensorBoard and the power history; returns the row."""
        t = float(self.clock())
        row: dict[str, Any] = {"time": round(t, 3), "cpu_util_pct": self._psutil.cpu_percent(None),
                               "mem_used_pct": self._psutil.virtual_memory().percent,
                               "rss_mb": round(self._process.memory_info().rss / 2 ** 20, 1)}
        powers = []
        if self.rapl is not None:
            counters = self.rapl.read()
            if self._last is not None and t > self._last[0]:
                row["cpu_power_w"] = self.rapl.joules_between(self._last[1], counters) / (t - self._last[0])
                powers.append(row["cpu_power_w"])
            self._last = (t, counters)
        if self.gpu is not None:
            row["gpu_power_w"] = self.gpu.power_w()
            row["gpu_util_pct"], row["gpu_mem_mb"] = self.gpu.utilisation()
            powers.append(row["gpu_power_w"])
        complete = bool(powers) and (self.rapl is None or "cpu_power_w" in row)
        with self._lock:
            if complete:
                if self._times:
                    self._energy += sum(powers) * (t - self._times[-1])
                row["power_w"], row["energy_j"] = sum(powers), round(self._energy, 3)
                self._times.append(t)
                self._powers.append(sum(powers))
            elif self.has_power and not self._times:
                self._times.append(t)  # first RAPL reading: the start of the first interval
                self._powers.append(float("nan"))
        self._write(row, t)
        return row

    def _write(self, row: dict[str, Any], t: float) -> None:
        if self._writer is not None:
            self._writer.writerow(["" if row.get(c) is None else _fmt(row[c]) for c in self.columns])
            self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "time" and value is not None:
                    self._tb.add_scalar(f"power/{key}", value, self._n, walltime=t)
        self._n += 1

    def joules(self, t0: float, t1: float) -> float | None:
        """Energy between two ``clock()`` times from the power history; ``None`` without power or coverage.

        A sample's power holds over the interval ending at it; past the last sample the last power is carried
        forward (the window has usually just ended), before the first one nothing is known (``None``).
        """
        with self._lock:
            times, powers = list(self._times), list(self._powers)
        if len(times) < 2 or t1 < t0 or t0 < times[0]:
            return None
        total = 0.0
        i = bisect.bisect_right(times, t0)
        left = t0
        while i < len(times) and left < t1:
            right = min(times[i], t1)
            total += powers[i] * (right - left)
            left = right
            i += 1
        if left < t1:
            total += powers[-1] * (t1 - left)
        return total

    def stop(self) -> None:
        """Stop the thread, then close the CSV and TensorBoard writer (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10 * self.interval_s + 5)
            self._thread = None
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> "PowerSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _fmt(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value
