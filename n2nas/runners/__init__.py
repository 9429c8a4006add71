"""Runners: one interface (train shared weights on sampled children, score children) over three backends.

May import train, measure, metrics, data, the search-space protocols and below; never the search loop that
drives it. ``make_runner`` is the only place the search loop learns which backend it runs on: a new backend is one
module here plus its name in ``BACKENDS`` and one branch in ``make_runner``. Every backend trains shared weights with
the step of :mod:`n2nas.runners.shared`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from n2nas.errors import ConfigError
from n2nas.runners.runner import Runner

BACKENDS = ("local", "ray", "mpi")


@dataclass(frozen=True)
class RunnerConfig:
    """How the shared weights are trained and children scored across workers (not what is searched).

    ``workers``: Ray actors, or MPI ranks (then it must equal ``mpiexec -n``). ``mpi_mode`` ``sync`` averages
    gradients every step (one flat Allreduce); ``async`` makes rank 0 a parameter server folding worker weights
    in as ``history <- (w * history + update) / (w + 1)`` with ``w = weighting``, rejecting updates more than
    ``staleness`` versions old and ending a shared phase early once every worker's loss has converged.
    """

    backend: str = "local"
    workers: int = 1
    # Ray
    address: str | None = None          # None: start a local Ray; "auto" or "HOST:PORT": join that cluster
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_restarts: int = 3               # Ray restarts a crashed actor process this often; the driver resyncs it
    call_retries: int = 3               # a failed actor call is re-issued (after resync) this often
    # MPI
    mpi_mode: str = "sync"
    weighting: float = 1.0              # async history weight w: the master keeps w/(w+1), an update adds 1/(w+1)
    staleness: int = 4                  # async: updates computed from weights older than this are dropped
    async_steps: int = 2                # async: local steps a worker takes per exchange with the server
    converge_tol: float = 0.01          # async: relative loss improvement below this counts as no progress
    converge_patience: int = 3          # async: exchanges without progress before a worker says "converged"

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError("--backend", f"unknown backend {self.backend!r} (known: {', '.join(BACKENDS)})")
        if self.workers < 1:
            raise ConfigError("--workers", f"must be at least 1, got {self.workers}")
        if self.backend == "local" and self.workers != 1:
            raise ConfigError("--workers", "the local backend runs one worker; use --backend ray or mpi")
        if self.mpi_mode not in ("sync", "async"):
            raise ConfigError("--mpi-mode", f"expected sync or async, got {self.mpi_mode!r}")
        if self.weighting < 0:
            raise ConfigError("--weighting", f"must be >= 0, got {self.weighting}")
        if self.staleness < 0 or self.async_steps < 1 or self.converge_patience < 1:
            raise ConfigError("--staleness", "staleness >= 0, async_steps >= 1 and converge_patience >= 1")


def make_runner(config: RunnerConfig, space_def, ctx, shared, device, seed: int) -> Runner:
    """The runner for ``config.backend``; every backend takes the same search-space, data and training inputs."""
    if config.backend == "ray":
        from n2nas.runners.ray import RayRunner

        return RayRunner(config, space_def, ctx, shared, device, seed)
    if config.backend == "mpi":
        from n2nas.runners.mpi import MpiRunner

        return MpiRunner(config, space_def, ctx, shared, device, seed)
    from n2nas.runners.local import LocalRunner

    return LocalRunner(space_def, ctx, shared, device, seed)


def guarded(config: RunnerConfig):
    """Under MPI, any error aborts every rank (a rank left waiting in a collective would hang the job)."""
    if config.backend != "mpi":
        return contextlib.nullcontext()
    from n2nas.runners.mpi import abort_on_error

    return abort_on_error()


__all__ = ["BACKENDS", "Runner", "RunnerConfig", "guarded", "make_runner"]
