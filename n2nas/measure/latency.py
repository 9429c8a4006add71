"""Inference latency per record: the median of repeated, warm, timed forward passes on the target device.

One record is one model input of batch 1 (one window in, one label out: how a deployed model sees a record).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from n2nas.presets import preset


@dataclass(frozen=True)
class LatencyConfig:
    """How latency is timed. The search's defaults keep it to a few forward passes per new architecture."""

    enabled: bool = True
    warmup: int = 2             # untimed passes first: allocator, oneDNN primitives, cuDNN autotuning
    repeats: int = 5            # timed passes; the median resists a busy shared machine
    max_seconds: float = 0.5    # stop timing early (after >= 1 timed pass) so one slow child cannot stall a search
    cpu_threads: int | None = 1  # CPU threads while timing: a single-core deployment; None keeps torch's setting

    def __post_init__(self):
        if self.warmup < 0 or self.repeats < 1 or self.max_seconds <= 0:
            raise ValueError("LatencyConfig needs warmup >= 0, repeats >= 1 and max_seconds > 0")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError("LatencyConfig.cpu_threads must be >= 1 or None")

    @staticmethod
    @preset()
    def thorough() -> "LatencyConfig":
        """For reporting a final model's latency rather than ranking children."""
        return LatencyConfig(warmup=10, repeats=50, max_seconds=60.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_latency_ms(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device = "cpu",
                       config: LatencyConfig = LatencyConfig()) -> float:
    """Median milliseconds of one forward pass of ``model`` (eval mode) on an input of ``input_shape``
    (batch included), after ``config.warmup`` untimed passes. CUDA work is synchronised around each pass.

    On the CPU the passes run on ``config.cpu_threads`` threads (restored afterwards): batch-1 passes of small
    models are dominated by thread-pool hand-offs, which stall for tens of ms whenever the machine is busy.
    """
    device = torch.device(device)
    was_training, threads = model.training, torch.get_num_threads()
    model.eval()
    try:
        if device.type == "cpu" and config.cpu_threads is not None:
            torch.set_num_threads(config.cpu_threads)
        # not zeros: a zero input hides the cost of denormal weights (0 times a denormal is exactly 0)
        x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        for _ in range(config.warmup):
            model(x)
        times: list[float] = []
        deadline = time.perf_counter() + config.max_seconds
        while len(times) < config.repeats and (not times or time.perf_counter() < deadline):
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    return 1000.0 * statistics.median(times)
