"""Measurement set-up of one search run: reward targets, energy meter, the refusal of unmeasurable terms, and the
background power sampler. Kept out of the search loop so the loop reads as the ENAS algorithm."""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from n2nas.errors import ConfigError
from n2nas.measure.reward import RewardConfig


@dataclass(frozen=True)
class RunMeasurement:
    """What every trial line needs from the run's measurement set-up: the resolved reward and the sampler
    (None when it samples no power)."""

    reward: RewardConfig
    sampler: Any = None


def preflight(config) -> None:
    """Refuse, before anything is written, a device this machine lacks (``--device cuda`` without CUDA) and an
    energy-weighted reward on a machine without an energy source."""
    from n2nas.measure.energy import pick_meter
    from n2nas.measure.reward import check_measurable
    from n2nas.train.primitives import pick_device

    device = pick_device(config.device)
    if config.reward.uses_energy:
        meter = pick_meter(device, config.measure.joules_per_flop)
        meter.close()
        check_measurable(config.reward, meter.source, latency_enabled=True)


def start_measurement(runner, space, costs, config, run_dir: Path, log, resources: ExitStack) -> RunMeasurement:
    """Resolve the reward's FLOPs target (per 30 s record of the (pinned) ``space``'s default child, from
    ``costs``, an ArchitectureCosts), give the runner its meter, refuse what cannot be measured, and start the
    background power sampler (``power.csv`` + ``tensorboard/power``); ``resources`` closes them."""
    from n2nas.measure.energy import NVMLMeter, RAPLMeter, pick_meter
    from n2nas.measure.reward import check_measurable
    from n2nas.measure.sampler import PowerSampler
    from n2nas.train.primitives import pick_device

    reward = config.reward.resolved(costs.of(space.default_sample())["flops_per_record"])
    meter = pick_meter(pick_device(config.device), config.measure.joules_per_flop)
    resources.callback(meter.close)
    check_measurable(reward, meter.source, config.measure.latency.enabled)
    if reward.uses_energy:  # one comparison never mixes measured, estimated and differently-measured energy
        other = sorted({t["energy_source"] for t in log.records} - {meter.source, "unmeasured"})
        if other:
            raise ConfigError("--resume", f"this run's energy came from {', '.join(other)}, this machine offers "
                                          f"{meter.source}; energy-weighted rewards would mix the two")
    runner.set_measurement(config.measure, reward, meter)
    if config.measure.power_interval_s is None:
        return RunMeasurement(reward)
    parts = getattr(meter, "meters", [meter])
    sampler = PowerSampler(run_dir / "power.csv", run_dir / "tensorboard" / "power", config.measure.power_interval_s,
                           rapl=next((m for m in parts if isinstance(m, RAPLMeter)), None),
                           gpu=next((m for m in parts if isinstance(m, NVMLMeter)), None))
    resources.enter_context(sampler)
    return RunMeasurement(reward, sampler if sampler.has_power else None)

