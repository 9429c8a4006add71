"""Multi-objective reward: metric x (FLOPs/target)^w x (energy/target)^v x (latency/target)^u, plus hard limits.

The soft form is MnasNet's (Tan et al., 2019); w = -0.07 is the weight EfficientNet used with FLOPs. With a
negative weight a child 10x cheaper than the target gets 10^0.07 = 1.175x the metric. A target only scales
every reward by the same constant, so it never changes the ranking; the default FLOPs target is the FLOPs of
the space's default child so rewards stay near the bare metric.

Hard limits (max FLOPs, parameters, latency) make a child *infeasible*: it is not scored, its status is
``"infeasible"`` and its reward is ``infeasible_reward`` (default 0, below any feasible F1 or accuracy) so the
controller learns to avoid it. The preprocessing screen waives them: its probe, the space's default architecture,
only compares data representations and is never a result itself.

A weighted term whose measurement is missing never silently becomes 1.0: :func:`check_measurable` refuses such a
configuration when the search starts (an energy weight on a machine with no counter needs ``joules_per_flop``).
Energy is compared per scored record (joules of the scoring window / records scored), so controller-phase and
derive-phase children are on the same scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

from n2nas.errors import ConfigError
from n2nas.presets import preset


@dataclass(frozen=True)
class RewardConfig:
    """Weights (<= 0), targets (> 0) and hard limits of the reward."""

    flops_weight: float = -0.07
    flops_target: float | None = None        # FLOPs per 30 s record; None: the space's default child
    energy_weight: float = 0.0
    energy_target_j: float = 1.0             # joules per scored record
    latency_weight: float = 0.0
    latency_target_ms: float = 10.0          # per record (one input, batch 1)
    max_flops: float | None = None           # FLOPs per 30 s record (every multi-crop window)
    max_params: int | None = None
    max_latency_ms: float | None = None
    infeasible_reward: float = 0.0

    def __post_init__(self):
        for name in ("flops_weight", "energy_weight", "latency_weight"):
            if getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')}",
                                  f"must be <= 0 (a positive weight rewards cost), got {getattr(self, name)}")
        for name in ("flops_target", "energy_target_j", "latency_target_ms", "max_flops", "max_params",
                     "max_latency_ms"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"--{name.replace('_', '-')}", f"must be positive, got {value}")

    @staticmethod
    @preset()
    def mnas(flops_target: float | None = None) -> "RewardConfig":
        """EfficientNet's soft FLOPs trade-off, w = -0.07 (the default)."""
        return RewardConfig(flops_weight=-0.07, flops_target=flops_target)

    @staticmethod
    @preset("accuracy")
    def accuracy_only() -> "RewardConfig":
        """The bare metric: no cost terms, no limits."""
        return RewardConfig(flops_weight=0.0)

    @staticmethod
    @preset()
    def mnas_latency(target_ms: float = 10.0) -> "RewardConfig":
        """MnasNet's original soft latency trade-off, w = -0.07 on measured latency, no FLOPs term."""
        return RewardConfig(flops_weight=0.0, latency_weight=-0.07, latency_target_ms=target_ms)

    @property
    def uses_energy(self) -> bool:
        """Whether the reward needs an energy reading."""
        return self.energy_weight != 0

    @property
    def uses_latency(self) -> bool:
        """Whether the reward needs a latency measurement."""
        return self.latency_weight != 0 or self.max_latency_ms is not None

    def without_limits(self) -> "RewardConfig":
        """The same soft trade-off with no hard limits (for probes that are not candidates themselves)."""
        return replace(self, max_flops=None, max_params=None, max_latency_ms=None)

    def resolved(self, default_flops: float) -> "RewardConfig":
        """This config with an unset FLOPs target replaced by ``default_flops``."""
        return self if self.flops_target is not None else replace(self, flops_target=float(default_flops))


@dataclass(frozen=True)
class RewardTerms:
    """The reward and every factor that made it; ``infeasible`` lists the hard limits a child broke."""

    reward: float | None
    metric: float | None
    flops: float = 1.0
    energy: float = 1.0
    latency: float = 1.0
    infeasible: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The ``reward_terms`` object of a trial line."""
        return {"metric": self.metric, "flops": self.flops, "energy": self.energy, "latency": self.latency}


def limits_broken(config: RewardConfig, cost: Mapping[str, Any]) -> list[str]:
    """Human-readable reasons a child breaks the hard limits (empty when feasible); the one place they are checked.

    ``cost`` is an :class:`~n2nas.measure.cost.ArchitectureCosts` entry (``params``, ``flops_per_record``), with
    ``latency_ms`` once the child was timed: a latency limit is only checked on a cost that carries the key.
    """
    reasons = []
    flops, params = cost.get("flops_per_record"), cost.get("params")
    if config.max_flops is not None and flops is not None and flops > config.max_flops:
        reasons.append(f"flops {flops:.4g} > max {config.max_flops:.4g}")
    if config.max_params is not None and params is not None and params > config.max_params:
        reasons.append(f"params {params} > max {config.max_params}")
    if config.max_latency_ms is not None and "latency_ms" in cost:
        latency_ms = cost["latency_ms"]
        if latency_ms is None:
            raise ConfigError("--max-latency-ms", "needs latency to be measured")
        if latency_ms > config.max_latency_ms:
            reasons.append(f"latency {latency_ms:.3g} ms > max {config.max_latency_ms:.3g} ms")
    return reasons


def _factor(weight: float, value: float | None, target: float | None, what: str) -> float:
    if weight == 0:
        return 1.0
    if value is None:
        raise ConfigError(f"--{what}-weight", f"{what} was not measured for this child, so it cannot be weighted")
    if target is None:
        raise ConfigError(f"--{what}-target", "no target set (call RewardConfig.resolved first)")
    return (max(float(value), 1e-30) / target) ** weight  # a zero cost must not blow up to inf


def compute_reward(config: RewardConfig, metric: float | None, cost: Mapping[str, Any],
                   energy_per_record_j: float | None = None) -> RewardTerms:
    """The reward of one child of ``cost`` (params, FLOPs per record, latency; see :func:`limits_broken`).
    ``metric`` None means the child failed (reward None).

    A negative metric (e.g. the CinC 2021 challenge score) is divided by the cost factor instead of multiplied,
    so a cheaper child is still never worse than an expensive one with the same metric.
    """
    reasons = limits_broken(config, cost)
    if reasons:
        return RewardTerms(config.infeasible_reward, metric, infeasible=tuple(reasons))
    if metric is None or not math.isfinite(metric):
        return RewardTerms(None, None)
    f = _factor(config.flops_weight, cost.get("flops_per_record"), config.flops_target, "flops")
    e = _factor(config.energy_weight, energy_per_record_j, config.energy_target_j, "energy")
    lat = _factor(config.latency_weight, cost.get("latency_ms"), config.latency_target_ms, "latency")
    factor = f * e * lat
    reward = metric * factor if metric >= 0 else metric / factor
    return RewardTerms(float(reward), float(metric), f, e, lat)


def check_measurable(config: RewardConfig, energy_source: str, latency_enabled: bool) -> None:
    """Refuse, at startup, a weighted term this run cannot measure (instead of scoring it as 1.0)."""
    if config.uses_energy and energy_source == "unmeasured":
        raise ConfigError("--energy-weight", "needs a measured energy source; this machine has none (no NVML GPU "
                                             "energy counter, no readable RAPL); use --joules-per-flop to estimate")
    if config.uses_latency and not latency_enabled:
        raise ConfigError("--latency-weight", "latency is weighted or limited but latency measurement is off")


def trial_reward_fields(result: dict[str, Any], config: RewardConfig, waive_limits: bool = False) -> dict[str, Any]:
    """Trial-line fields for a runner result (which carries the bare ``metric`` and its ``metric_name``): status,
    the reward (metric x cost factors, within the hard limits) and every term of it.

    Runners that already skipped an infeasible child report status ``"infeasible"``; others are checked here, so
    every runner obeys the same limits. ``waive_limits``: rewarded as if there were none, the limits the child
    broke kept as ``limits_waived`` (the screen's probe, which is never a result).
    """
    records = result.get("records")
    energy = result.get("energy_j")
    per_record = energy / records if energy is not None and records else None
    metric = result.get("metric") if result["status"] == "ok" else None
    fields: dict[str, Any] = {}
    if waive_limits:
        broken = limits_broken(config, result)
        if broken:
            fields["limits_waived"] = broken
        config = config.without_limits()
    terms = compute_reward(config, metric, result, per_record)
    fields.update({"status": result["status"], "metric": terms.metric, "metric_name": result.get("metric_name"),
                   "reward": terms.reward, "reward_terms": terms.as_json(), "energy_per_record_j": per_record})
    if terms.infeasible:
        fields.update(status="infeasible", infeasible=list(terms.infeasible))
    elif result["status"] != "ok":
        fields["reward"] = None
    return fields
