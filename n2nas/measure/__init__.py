"""Measuring children: FLOPs and parameters, energy meters, latency, the background power sampler, and the reward
that folds them into one number with the clinical metric. May import artifacts, search_spaces, train and below.
"""
from __future__ import annotations

from dataclasses import dataclass

from n2nas.errors import ConfigError
from n2nas.measure.latency import LatencyConfig


@dataclass(frozen=True)
class MeasureConfig:
    """How a search measures its children (what the reward does with the numbers is ``RewardConfig``).

    ``joules_per_flop`` switches energy to the FLOPs estimate (source ``"estimate:flops"``) instead of any
    counter; ``power_interval_s`` is the background sampler's period (None: no sampler).
    """

    latency: LatencyConfig = LatencyConfig()
    joules_per_flop: float | None = None
    power_interval_s: float | None = 1.0

    def __post_init__(self):
        if self.joules_per_flop is not None and not self.joules_per_flop > 0:
            raise ConfigError("--joules-per-flop", f"must be positive, got {self.joules_per_flop}")
        if self.power_interval_s is not None and not self.power_interval_s > 0:
            raise ConfigError("--power-interval", f"must be positive, got {self.power_interval_s}")


__all__ = ["LatencyConfig", "MeasureConfig"]
