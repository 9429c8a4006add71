"""Measurement set-up of one search run: reward targets, energy meter, the refusal of unmeasurable terms, and the
background power sampler. Kept out of the search loop so the loop reads as the ENAS algorithm."""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from n2nas.errors import ConfigError
from n2nas.measure.reward import RewardConfig


@dataclass(frozen=True)
class RunMeasurement:
    """What every trial line needs from the run's measurement set-up: the resolved reward and the sampler
    (None when it samples no power)."""

    reward: RewardConfig
    sampler: Any = None


def preflight(config) -> None:
    """Refuse an energy-weighted reward on a machine without an energy source before anything is written."""
    from n2nas.measure.energy import pick_meter
    from n2nas.measure.reward import check_measurable
    from n2nas.train.primitives import pick_device

    if config.reward.uses_energy:
        meter = pick_meter(pick_device(config.device), config.measure.joules_per_flop)
        meter.close()
        check_measurable(config.reward, meter.source, latency_enabled=True)


def start_measurement(runner, space_def, space, dataset, config, run_dir: Path, log, resources: ExitStack
                      ) -> RunMeasurement:
    """Resolve the reward's FLOPs target, give the runner its meter, refuse what cannot be measured, and start
    the background power sampler (``power.csv`` + ``tensorboard/power``); ``resources`` closes them."""
    from n2nas.measure.energy import NVMLMeter, RAPLMeter, pick_meter
    from n2nas.measure.reward import check_measurable
    from n2nas.measure.sampler import PowerSampler
    from n2nas.train.primitives import pick_device

    reward = config.reward.resolved(default_flops(runner, space_def, space, dataset))
    meter = pick_meter(pick_device(config.device), config.measure.joules_per_flop)
    resources.callback(meter.close)
    check_measurable(reward, meter.source, config.measure.latency.enabled and hasattr(runner, "set_measurement"))
    if reward.uses_energy:  # one comparison never mixes measured, estimated and differently-measured energy
        other = sorted({t["energy_source"] for t in log.records} - {meter.source, "unmeasured"})
        if other:
            raise ConfigError("--resume", f"this run's energy came from {', '.join(other)}, this machine offers "
                                          f"{meter.source}; energy-weighted rewards would mix the two")
    if hasattr(runner, "set_measurement"):
        runner.set_measurement(config.measure, reward, meter)
    if config.measure.power_interval_s is None:
        return RunMeasurement(reward)
    parts = getattr(meter, "meters", [meter])
    sampler = PowerSampler(run_dir / "power.csv", run_dir / "tensorboard" / "power", config.measure.power_interval_s,
                           rapl=next((m for m in parts if isinstance(m, RAPLMeter)), None),
                           gpu=next((m for m in parts if isinstance(m, NVMLMeter)), None))
    resources.enter_context(sampler)
    return RunMeasurement(reward, sampler if sampler.has_power else None)


def default_flops(runner, space_def, space, dataset) -> float:
    """FLOPs per 30 s record of the space's default child (pinned labels as pinned): the default FLOPs target.

    Counted from the input shape the space declares, so no extra preprocessing runs; a runner's ``cost`` (which
    prepares that pipeline's data) is the fallback for spaces that cannot say their input shape.
    """
    from n2nas.measure.cost import model_input_shape, windows_per_record
    from n2nas.measure.flops import count_flops

    sample = space.default_sample()
    try:
        n_inputs = space_def.input_size(dataset)
        shape = (1,) + model_input_shape(space_def, sample, n_inputs)
        with torch.random.fork_rng(devices=[]):  # must not move the search's seeded torch RNG
            child = space_def.build_child(sample, n_inputs, len(dataset.classes))
    except (AttributeError, TypeError, KeyError):
        if not hasattr(runner, "cost"):
            raise ConfigError("--flops-target", f"space {space.name!r} cannot say its input shape; set a target")
        return float(runner.cost(sample)[1])
    return float(count_flops(child, shape)) * windows_per_record(space_def, sample, 30.0, n_inputs)
