"""Energy meters with one interface: ``start = meter.begin()`` ... ``meter.end(start)`` -> joules and source.

- :class:`NVMLMeter`: an NVIDIA GPU's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules
  since the driver loaded; Volta and newer), source ``"nvml"``.
- :class:`RAPLMeter`: the CPU packages' (and DRAM's) RAPL counters under ``/sys/class/powercap``, in microjoules,
  wrapping at ``max_energy_range_uj``, source ``"rapl"``.
- :class:`UnmeasuredMeter`: no counter; every reading is ``None`` with source ``"unmeasured"``. Nothing is ever
  guessed silently (CodeCarbon's trap).
- :class:`FlopsEstimateMeter`: FLOPs executed x a user-given J/FLOP, source ``"estimate:flops"``; only built when
  the user passes ``joules_per_flop``.

Counters are whole-device: a window's joules include anything else running on that GPU or CPU package.
"""
from __future__ import annotations

import abc
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

RAPL_ROOT = Path("/sys/class/powercap")
UNMEASURED = "unmeasured"
ESTIMATE = "estimate:flops"


@dataclass(frozen=True)
class EnergyReading:
    """Joules of one measurement window (``None`` when unmeasured) and where they came from."""

    joules: float | None
    source: str

    @property
    def measured(self) -> bool:
        """True only for a hardware counter reading (never for an estimate)."""
        return self.joules is not None and self.source not in (UNMEASURED, ESTIMATE)


class EnergyMeter(abc.ABC):
    """Begin/end windows over an energy source."""

    source: str = UNMEASURED

    @abc.abstractmethod
    def begin(self) -> Any:
        """Open a window; returns the start state to pass to :meth:`end`."""

    @abc.abstractmethod
    def end(self, start: Any, flops: float | None = None) -> EnergyReading:
        """Close a window. ``flops`` (executed in the window) is used only by the estimate meter."""

    def close(self) -> None:
        """Release the counter (no-op unless a library handle is held)."""


class UnmeasuredMeter(EnergyMeter):
    """No counter on this machine: joules are ``None``, source ``"unmeasured"``."""

    source = UNMEASURED

    def begin(self) -> None:
        """Nothing to read."""
        return None

    def end(self, start: Any, flops: float | None = None) -> EnergyReading:
        """Always ``EnergyReading(None, "unmeasured")``."""
        return EnergyReading(None, UNMEASURED)


class FlopsEstimateMeter(EnergyMeter):
    """``joules = FLOPs executed x joules_per_flop``: an estimate, labelled ``"estimate:flops"`` everywhere."""

    source = ESTIMATE

    def __init__(self, joules_per_flop: float):
        if not joules_per_flop > 0:
            raise ValueError(f"joules_per_flop must be positive, got {joules_per_flop}")
        self.joules_per_flop = float(joules_per_flop)

    def begin(self) -> None:
        """Nothing to read: the estimate only needs the FLOPs at :meth:`end`."""
        return None

    def end(self, start: Any, flops: float | None = None) -> EnergyReading:
        """The estimate for ``flops``; an estimate without FLOPs is a programming error, not a zero."""
        if flops is None:
            raise ValueError("the FLOPs estimate needs the FLOPs executed in the window")
        return EnergyReading(float(flops) * self.joules_per_flop, ESTIMATE)


class NVMLMeter(EnergyMeter):
    """One NVIDIA GPU's total-energy counter through NVML (``nvidia-ml-py``).

    ``nvml`` is the ``pynvml`` module (injectable for tests); the GPU is found by ``uuid`` when given (NVML's
    indices ignore ``CUDA_VISIBLE_DEVICES``), else by NVML ``index``.
    """

    source = "nvml"

    def __init__(self, index: int = 0, uuid: str | None = None, nvml: Any = None):
        if nvml is None:
            import pynvml as nvml
        self.nvml = nvml
        nvml.nvmlInit()
        try:
            self.handle = (nvml.nvmlDeviceGetHandleByUUID(uuid) if uuid else nvml.nvmlDeviceGetHandleByIndex(index))
            self._read()  # fails here, not mid-search, on GPUs without the counter (pre-Volta)
        except Exception:
            nvml.nvmlShutdown()
            raise

    def _read(self) -> int:
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))  # millijoules

    def begin(self) -> int:
        """The counter now (mJ)."""
        return self._read()

    def end(self, start: int, flops: float | None = None) -> EnergyReading:
        """Joules since ``start`` (the 64-bit counter does not wrap in practice)."""
        return EnergyReading((self._read() - int(start)) / 1000.0, self.source)

    def power_w(self) -> float:
        """Current board power in watts (``nvmlDeviceGetPowerUsage`` is in milliwatts)."""
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0

    def utilisation(self) -> tuple[float, float]:
        """(GPU utilisation %, memory used MiB)."""
        util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
        mem = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
        return float(util.gpu), mem.used / 2 ** 20

    def close(self) -> None:
        """Shut NVML down (it reference-counts init/shutdown)."""
        self.nvml.nvmlShutdown()


@dataclass(frozen=True)
class RAPLZone:
    """One powercap zone: its ``energy_uj`` file, name and wraparound range."""

    path: Path
    name: str
    max_uj: int

    def read_uj(self) -> int:
        """The counter now, in microjoules."""
        return int((self.path / "energy_uj").read_text())


def rapl_zones(root: str | Path = RAPL_ROOT) -> list[RAPLZone]:
    """Readable RAPL zones to sum: every package, plus DRAM sub-zones (outside the package on servers).

    Core/uncore sub-zones are inside their package and ``psys`` covers the whole platform, so both would count
    energy twice and are left out (``psys`` is used alone only when there is no package zone).
    """
    zones: list[RAPLZone] = []
    for path in sorted(Path(root).glob("intel-rapl:*")):
        depth = path.name.count(":")
        try:
            name = (path / "name").read_text().strip()
            zone = RAPLZone(path, name, int((path / "max_energy_range_uj").read_text()))
            zone.read_uj()  # unreadable without privileges on kernels >= 5.10
        except (OSError, ValueError):
            continue
        if (depth == 1 and re.match(r"package", name)) or (depth == 2 and name == "dram"):
            zones.append(zone)
        elif depth == 1 and name == "psys":
            zones.append(zone)
    if any(z.name.startswith("package") for z in zones):
        zones = [z for z in zones if z.name != "psys"]
    return zones


def rapl_delta_uj(start: int, end: int, max_uj: int) -> int:
    """Microjoules between two readings of a counter that wraps to 0 after ``max_uj``."""
    return end - start if end >= start else end + (max_uj - start)


class RAPLMeter(EnergyMeter):
    """Sum of the RAPL zones under ``root``; a window must be shorter than one wrap (minutes at full power)."""

    source = "rapl"

    def __init__(self, root: str | Path = RAPL_ROOT, zones: Sequence[RAPLZone] | None = None):
        self.zones = list(zones) if zones is not None else rapl_zones(root)
        if not self.zones:
            raise OSError(f"no readable RAPL energy counter under {root}")

    def read(self) -> tuple[int, ...]:
        """Every zone's counter (µJ)."""
        return tuple(z.read_uj() for z in self.zones)

    def joules_between(self, start: Sequence[int], end: Sequence[int]) -> float:
        """Joules between two :meth:`read` results, wraparound handled per zone."""
        return sum(rapl_delta_uj(a, b, z.max_uj) for a, b, z in zip(start, end, self.zones)) / 1e6

    def begin(self) -> tuple[int, ...]:
        """Every zone's counter now."""
        return self.read()

    def end(self, start: tuple[int, ...], flops: float | None = None) -> EnergyReading:
        """Joules since ``start``."""
        return EnergyReading(self.joules_between(start, self.read()), self.source)


class CompositeMeter(EnergyMeter):
    """Several counters summed (a GPU run: the GPU through NVML plus the CPU through RAPL), source ``"nvml+rapl"``."""

    def __init__(self, meters: Sequence[EnergyMeter]):
        self.meters = list(meters)
        self.source = "+".join(m.source for m in self.meters)

    def begin(self) -> list[Any]:
        """Every meter's start state."""
        return [m.begin() for m in self.meters]

    def end(self, start: list[Any], flops: float | None = None) -> EnergyReading:
        """The sum of every meter's joules."""
        readings = [m.end(s, flops) for m, s in zip(self.meters, start)]
        return EnergyReading(sum(r.joules for r in readings), self.source)

    def close(self) -> None:
        """Close every meter."""
        for m in self.meters:
            m.close()


def pick_meter(device: Any = "cpu", joules_per_flop: float | None = None, nvml: Any = None,
               rapl_root: str | Path = RAPL_ROOT) -> EnergyMeter:
    """The best honest meter for work on ``device``.

    ``joules_per_flop`` asks for the FLOPs estimate (and nothing else, so a run is never half measured, half
    estimated). Otherwise: NVML for a CUDA device (plus RAPL for the host CPU when readable), RAPL for the CPU,
    and :class:`UnmeasuredMeter` when no counter can be read.
    """
    if joules_per_flop is not None:
        return FlopsEstimateMeter(joules_per_flop)
    meters: list[EnergyMeter] = []
    dev = str(device)
    if dev.startswith("cuda"):
        gpu = _nvml_meter(dev, nvml)
        if gpu is not None:
            meters.append(gpu)
    try:
        meters.append(RAPLMeter(rapl_root))
    except OSError:
        pass
    if not meters:
        return UnmeasuredMeter()
    return meters[0] if len(meters) == 1 else CompositeMeter(meters)


def _nvml_meter(device: str, nvml: Any) -> NVMLMeter | None:
    """NVML meter for a torch CUDA device, or None when NVML or its energy counter is missing."""
    index = int(device.split(":")[1]) if ":" in device else 0
    uuid = None
    try:
        import torch

        raw = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        uuid = None if raw is None else (str(raw) if str(raw).startswith("GPU-") else f"GPU-{raw}")
    except Exception:  # noqa: BLE001 - no CUDA runtime: fall back to the NVML index
        uuid = None
    try:
        # by UUID when torch knows it: a wrong GPU's joules would be worse than none
        return NVMLMeter(index, uuid=uuid, nvml=nvml)
    except Exception:  # noqa: BLE001 - pynvml missing, no driver, or no energy counter on this GPU
        return None
