"""Data-parallel retraining: N processes with ``torch.distributed`` DistributedDataParallel (gloo on CPU,
NCCL on GPUs), started by ``torch.multiprocessing``.

Equivalence with one process. Every worker draws the *whole* global batch from the same seeded generator
(record order, random crops and augmentation are identical everywhere) and runs forward/backward on its
contiguous slice of ``B / N`` windows. Each worker's mean loss is weighted by ``n_slice * N / B`` so that the
gradient DDP averages is exactly the gradient of the global-batch mean loss. Without batch norm and dropout
the N-worker run therefore equals the one-process run up to floating-point rounding (batch norm normalises
over each worker's ``B / N`` windows instead of ``B``; dropout masks come from per-worker generators).

Learning-rate rule: by default the global batch stays the pipeline's ``batch_size`` and the learning rate is
unchanged (so N workers reproduce one). With ``global_batch`` set (e.g. N x the pipeline batch to keep every
worker's slice large), the learning rate is scaled linearly, ``lr * global_batch / batch_size`` (Goyal et al.
2017).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from n2nas.errors import ConfigError, N2NASError
from n2nas.train.numerics import use_cpu_threads


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and device of one training process; ``world == 1`` means no ``torch.distributed``."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and writes the model folder."""
        return self.rank == 0

    def slice(self, n: int) -> tuple[int, int]:
        """This worker's contiguous ``[lo, hi)`` part of a global batch of ``n`` (sizes differ by <= 1)."""
        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        return int(bounds[self.rank]), int(bounds[self.rank + 1])

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around ``model`` when there are several workers (gradients averaged in backward)."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sum(self, value: float) -> float:
        """Sum of ``value`` over the workers."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return float(t.item())

    def gather_rows(self, rows: np.ndarray, n_total: int) -> np.ndarray:
        """Concatenate every worker's ``rows`` in rank order (each computed on :meth:`slice` of ``n_total``)."""
        if self.world == 1:
            return rows
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, rows)
        out = np.concatenate(parts)
        assert len(out) == n_total, (len(out), n_total)
        return out

    def barrier(self) -> None:
        """Wait for every worker."""
        if self.world > 1:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if self.device is not None and self.device.type == "cuda" else torch.device("cpu")


def scaled_lr(lr: float, batch_size: int, global_batch: int | None) -> tuple[int, float]:
    """(global batch, learning rate) under the linear scaling rule; unchanged when ``global_batch`` is None."""
    if global_batch is None:
        return batch_size, lr
    if global_batch < 1:
        raise ConfigError("--global-batch", f"must be positive, got {global_batch}")
    return global_batch, lr * global_batch / batch_size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, device_type: str, threads: int, fn: Callable, args: tuple,
            messages) -> None:
    """Entry point of one spawned worker: join the process group, run ``fn``, leave."""
    use_cpu_threads(threads)
    cuda = device_type == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        ctx = DistContext(rank, world, torch.device("cuda", rank) if cuda else torch.device("cpu"))
        log = (lambda m: messages.put(("log", m))) if rank == 0 else (lambda _m: None)
        try:
            fn(*args, log=log, dist_ctx=ctx)
        except N2NASError as err:  # re-raised in the parent as the same one-line error
            messages.put(("error", (type(err).__name__, err.where, err.problem)))
            raise
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, world: int, args: tuple, device: torch.device, log: Callable[[str], None] = print) -> None:
    """Run ``fn(*args, log=..., dist_ctx=DistContext)`` in ``world`` processes and wait for them.

    CPU workers share the machine's cores evenly (``torch.set_num_threads``); GPU workers take one device each.
    Rank 0's log lines are forwarded to ``log`` here. A worker's :class:`N2NASError` is raised again here.
    Workers are *spawned*: ``fn`` and ``args`` are pickled to each (the dataset included), and a calling script
    must keep its top-level code under ``if __name__ == "__main__":`` (spawn re-imports the main module).
    """
    import torch.multiprocessing as mp

    from n2nas import errors

    if world < 2:
        raise ConfigError("--workers", "launch needs at least 2 workers")
    if device.type == "cuda" and torch.cuda.device_count() < world:
        raise ConfigError("--workers", f"{world} GPU workers need {world} GPUs, found {torch.cuda.device_count()}")
    threads = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
                  // world)
    mp_ctx = mp.get_context("spawn")
    messages = mp_ctx.SimpleQueue()
    procs = mp.start_processes(_worker, args=(world, _free_port(), device.type, threads, fn, args, messages),
                               nprocs=world, join=False, start_method="spawn")
    failure: BaseException | None = None
    while True:
        while not messages.empty():
            kind, payload = messages.get()
            if kind == "log":
                log(payload)
            else:
                name, where, problem = payload
                failure = getattr(errors, name, errors.N2NASError)(where, problem)
        try:
            if procs.join(timeout=0.2):
                break
        except Exception as err:  # a worker died: prefer its one-line N2NASError if it sent one
            while not messages.empty():
                kind, payload = messages.get()
                if kind == "error":
                    failure = getattr(errors, payload[0], errors.N2NASError)(payload[1], payload[2])
            if failure is not None:
                raise failure from None
            raise RuntimeError(f"data-parallel worker failed: {err}") from err
    while not messages.empty():
        kind, payload = messages.get()
        if kind == "log":
            log(payload)
