"""MPI backend (mpi4py, ``mpiexec -n N``): data-parallel shared-weight training in DiagnoseNET's two modes.

Rank 0 runs the search loop (controller, budget, run folder, checkpoints) and drives the other ranks through this
runner; ranks 1..N-1 run :func:`serve`, a command loop that holds one replica each. Rank 0 alone samples
children and decides when to stop, so no rank can disagree about a time budget (which would deadlock a
collective) and the controller's arithmetic never has to be bit-identical across processes.

* ``sync``: every rank computes the gradient of one sampled child per step; one flat vector per rank (gradients,
  used flags, BatchNorm buffers) is summed with a single ``Allreduce`` and every rank applies the same averaged,
  clipped gradient, so all ranks hold identical weights.
* ``async``: rank 0 is a parameter server. Workers take the master weights, do ``async_steps`` local steps and
  send their weights back; the server folds each one in as it arrives, ``master <- (w*master + update)/(w+1)``,
  drops updates more than ``staleness`` versions old, and ends the shared phase once every worker reports that its
  loss has converged.

Scoring is spread across all ranks (``samples[rank::N]``). Any exception on any rank aborts the whole job with
``MPI_Abort``; checkpoints are written atomically, so the last one stays intact and ``--resume`` continues it.
Idle ranks poll for their next message with a short sleep instead of MPI's busy wait, leaving cores to the ranks
that compute.
"""
from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections import deque
from typing import Any

import numpy as np
import torch

from n2nas.errors import ConfigError, N2NASError
from n2nas.runners.runner import Runner
from n2nas.runners.flat_weights import (Convergence, FlatLayout, fold, interleave, rng_state, set_rng_state,
                                        weights_digest, worker_seed)
from n2nas.runners.local import LocalRunner, load_weights_and_optimizer, weights_and_optimizer
from n2nas.train.numerics import use_cpu_threads

_CMD, _WORK, _RESULT = 11, 12, 13


def world() -> tuple[Any, int, int]:
    """``(COMM_WORLD, rank, size)``; importing mpi4py.MPI initialises MPI (a singleton without mpiexec)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm, comm.Get_rank(), comm.Get_size()


@contextlib.contextmanager
def abort_on_error():
    """On any exception in a multi-rank job: print one line naming the rank, then ``MPI_Abort`` every rank.

    Without this a failing rank would leave the others blocked in a collective forever. With one rank the
    exception simply propagates.
    """
    try:
        yield
    except BaseException as err:
        if isinstance(err, SystemExit) and not err.code:
            raise
        comm, rank, size = world()
        if size > 1:
            print(f"n2nas: error on MPI rank {rank}: {err}", file=sys.stderr, flush=True)
            # mpiexec forwards each rank's stderr asynchronously and Abort tears its proxies down: under load
            # the line above was lost (empty stderr, exit 1). A moment lets the proxy pass it on.
            time.sleep(1.0)
            comm.Abort(2 if isinstance(err, N2NASError) else 1)
        raise


def _poll_recv(comm, source: int | None, tag: int) -> tuple[Any, int]:
    """Blocking receive from ``source`` (None: any rank) that sleeps while nothing has arrived (MPICH's own
    wait spins a core); returns the message and its source."""
    from mpi4py import MPI

    source = MPI.ANY_SOURCE if source is None else source
    status, pause = MPI.Status(), 1e-4
    while not comm.Iprobe(source=source, tag=tag, status=status):
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    src = status.Get_source()
    return comm.recv(source=src, tag=tag), src


def _train_steps(replica, samples, rule=None) -> tuple[list[float], int]:
    losses, failed = [], 0
    for sample in samples:
        loss = replica.child_gradient(sample, rule)
        if loss is None:
            failed += 1
        else:
            replica.apply_gradients()
            losses.append(loss)
    return losses, failed


def _sync_rounds(comm, replica, layout: FlatLayout, samples, rule=None) -> tuple[list[float], int]:
    """Every rank runs this with the same ``samples``: one Allreduce per step, the same update everywhere."""
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    losses, failed = [], 0
    for start in range(0, len(samples), size):
        chunk = samples[start:start + size]
        loss = replica.child_gradient(chunk[rank], rule) if rank < len(chunk) else None
        packed = layout.pack_step(loss)
        total = np.empty_like(packed)
        comm.Allreduce(packed, total, op=MPI.SUM)
        mean, n_ok = layout.apply_step(replica, total)
        failed += len(chunk) - n_ok
        if mean is not None:
            losses.append(mean)
    return losses, failed


def _score_share(replica, samples, records, limits: bool, rank: int, size: int):
    # Forked RNG: building a child for its cost (memoised per process) must not shift the dropout stream.
    with torch.random.fork_rng(devices=[]):
        return replica.score(samples[rank::size], records, limits)


def _async_worker(comm, replica, layout: FlatLayout, config) -> None:
    """Take master weights, do local steps, send weights back, until the server says stop."""
    tracker = Convergence(config.converge_tol, config.converge_patience)
    while True:
        msg, _ = _poll_recv(comm, 0, _WORK)
        if msg[0] == "stop":
            layout.load_state_vector(msg[1])
            return
        _, version, master, work, rule = msg
        layout.load_state_vector(master)
        losses, failed = _train_steps(replica, work, rule)
        converged = tracker.update(float(np.mean(losses)) if losses else None)
        comm.send((version, layout.state_vector(), losses, failed, converged), dest=0, tag=_RESULT)


def _rank_state(replica, mode: str) -> dict[str, Any]:
    # Async workers keep their own Adam state; sync ranks share rank 0's, so only RNG states differ.
    return {"rng": rng_state(replica), "optimizer": replica.optimizer.state_dict() if mode == "async" else None,
            "digest": weights_digest(replica.supernet)}


def _load_rank_state(replica, state: dict[str, Any], rank: int) -> None:
    load_weights_and_optimizer(replica, state)
    mine = state["workers"][rank]
    if mine.get("optimizer") is not None:
        replica.optimizer.load_state_dict(copy.deepcopy(mine["optimizer"]))  # a copy: see load_weights_and_optimizer
    set_rng_state(replica, mine["rng"])


class MpiRunner(Runner):
    """Rank 0's side of the MPI backend; see the module docstring."""

    def __init__(self, config, space_def, ctx, shared, device: torch.device, seed: int):
        self.comm, self.rank, self.size = world()
        if self.rank != 0:
            raise N2NASError("MpiRunner runs on rank 0; other ranks call n2nas.runners.mpi.serve")
        if config.workers != self.size:
            raise ConfigError("--workers", f"--workers {config.workers} but mpiexec started {self.size} ranks")
        if config.mpi_mode == "async" and self.size < 2:
            raise ConfigError("--mpi-mode", "async needs at least 2 ranks (a parameter server and a worker)")
        if self.size > 1:
            use_cpu_threads(1)  # one rank per core
        self.config = config
        self.replica = LocalRunner(space_def, ctx, shared, device, seed, worker=0)
        self.layout = FlatLayout(self.replica.supernet)
        self.version = 0  # async: folds accepted so far
        self._closed = False
        self._send("init", {"space_def": space_def, "shared": shared, "seed": seed, "device": str(device),
                            "train_idx": ctx.train_idx, "val_idx": ctx.val_idx,
                            "cache_dir": getattr(ctx, "cache_dir", None), "data_workers": getattr(ctx, "workers", 1),
                            "config": config})
        self._send("sync", weights_and_optimizer(self.replica))  # every replica starts from rank 0's weights

    def _send(self, command: str, payload: Any = None) -> None:
        for k in range(1, self.size):
            self.comm.send((command, payload), dest=k, tag=_CMD)

    def local_replica(self) -> LocalRunner:
        """The driver's in-sync replica."""
        return self.replica

    def set_measurement(self, measure, reward=None, meter=None) -> None:
        """Per-child latency/energy measurement: rank 0 keeps ``meter``, every other rank builds its own."""
        self.replica.set_measurement(measure, reward, meter)
        self._send("measure", (measure, reward))

    def train_shared(self, samples, rule=None):
        """One shared phase in the configured mode, every step trained with ``rule`` (None: the configured one)."""
        if self.config.mpi_mode == "async":
            return self._train_async(samples, rule)
        self._send("train_sync", (samples, rule))
        losses, failed = _sync_rounds(self.comm, self.replica, self.layout, samples, rule)
        return {"shared_loss": float(np.mean(losses)) if losses else math.nan, "shared_failed": failed}

    def _train_async(self, samples, rule=None):
        c = self.config
        self._send("train_async")
        master = self.layout.state_vector()
        queue, busy = deque(samples), set()
        converged = {k: False for k in range(1, self.size)}
        losses, failed, stale = [], 0, 0

        def hand_out(k: int) -> None:
            work = [queue.popleft() for _ in range(min(c.async_steps, len(queue)))]
            self.comm.send(("work", self.version, master, work, rule), dest=k, tag=_WORK)
            busy.add(k)

        for k in converged:
            if queue:
                hand_out(k)
        while busy:
            (version, update, worker_losses, worker_failed, done), k = _poll_recv(self.comm, None, _RESULT)
            busy.discard(k)
            losses += worker_losses
            failed += worker_failed
            if worker_losses and self.version - version <= c.staleness:
                fold(master, update, c.weighting)
                self.version += 1
            elif worker_losses:
                stale += 1
            converged[k] = done
            if queue and not all(converged.values()):
                hand_out(k)
        for k in converged:
            self.comm.send(("stop", master), dest=k, tag=_WORK)
        self.layout.load_state_vector(master)
        return {"shared_loss": float(np.mean(losses)) if losses else math.nan, "shared_failed": failed,
                "shared_stale": stale, "shared_skipped": len(queue), "server_version": self.version}

    def score(self, samples, records, limits=True):
        """Children spread across every rank, results in the order of ``samples``."""
        self._send("score", (samples, records, limits))
        mine = _score_share(self.replica, samples, records, limits, 0, self.size)
        return interleave(self.comm.gather(mine, root=0), len(samples))

    def state_dict(self):
        """Rank 0's weights and optimizer plus every rank's RNG (and, in async mode, optimizer) state."""
        self._send("state")
        ranks = self.comm.gather(_rank_state(self.replica, self.config.mpi_mode), root=0)
        digests = [r["digest"] for r in ranks]
        if len(set(digests)) > 1:  # sync replicas must be bit-identical; async ones all hold the final master
            raise N2NASError(f"MPI ranks hold different weights after training (digests {digests})")
        return {**weights_and_optimizer(self.replica), "version": self.version, "workers": ranks,
                "digests": digests}

    def load_state_dict(self, state):
        """Restore every rank from a checkpoint taken with the same number of ranks."""
        if len(state["workers"]) != self.size:
            raise ConfigError("--workers", f"checkpoint has {len(state['workers'])} MPI ranks, this job {self.size}")
        self._send("load", state)
        _load_rank_state(self.replica, state, 0)
        self.version = int(state.get("version", 0))

    def close(self):
        """Release the serving ranks."""
        if not self._closed:
            self._send("close")
            self._closed = True


def serve(data) -> None:
    """A non-root rank: hold a replica and follow rank 0's commands until it closes the runner."""
    from n2nas.data.spec import load_dataset

    comm, rank, size = world()
    with abort_on_error():
        use_cpu_threads(1)
        dataset = load_dataset(data) if isinstance(data, str) else data
        (command, setup), _ = _poll_recv(comm, 0, _CMD)
        if command == "close":
            return
        seed = worker_seed(setup["seed"], rank)
        torch.manual_seed(seed)
        device = torch.device(setup["device"])
        if device.type == "cuda":
            device = torch.device("cuda", rank % torch.cuda.device_count())
        ctx = setup["space_def"].make_context(dataset, setup["train_idx"], setup["val_idx"], setup["cache_dir"],
                                              setup["data_workers"])
        replica = LocalRunner(setup["space_def"], ctx, setup["shared"], device, seed, worker=rank)
        layout, config = FlatLayout(replica.supernet), setup["config"]
        while True:
            (command, payload), _ = _poll_recv(comm, 0, _CMD)
            if command == "close":
                return
            if command == "sync":
                load_weights_and_optimizer(replica, payload)
            elif command == "train_sync":
                _sync_rounds(comm, replica, layout, *payload)
            elif command == "train_async":
                _async_worker(comm, replica, layout, config)
            elif command == "score":
                comm.gather(_score_share(replica, *payload, rank, size), root=0)
            elif command == "state":
                comm.gather(_rank_state(replica, config.mpi_mode), root=0)
            elif command == "load":
                _load_rank_state(replica, payload, rank)
            elif command == "measure":
                replica.set_measurement(*payload)
            else:
                raise N2NASError(f"unknown MPI command {command!r}")


def serve_if_worker(data) -> bool:
    """True (after serving until rank 0 closed its runner) on a non-root rank; False on rank 0."""
    _, rank, _ = world()
    if rank == 0:
        return False
    serve(data)
    return True
