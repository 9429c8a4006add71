"""Ray backend: W actors, each a full replica (a LocalRunner) of the supernet and its optimizer.

Shared-weight training is synchronous data-parallel: in each round worker ``k`` computes the gradient of sample
``r * W + k`` on its own batch; the driver sums the flat step vectors in worker order and every replica (the
driver's copy included) applies the same averaged, clipped gradient with the same Adam state, so all replicas stay
bit-identical with one round trip per step (the sum of round ``r`` travels with the work of round ``r + 1``).
Scoring splits the children across actors (``samples[k::W]``) and reuses LocalRunner.score, so whatever the
local runner measures per child (metrics, cost, energy) comes back unchanged.

Fault tolerance: the driver's replica is the source of truth and it remembers each worker's RNG state after its
last finished call. Actors run with ``max_restarts`` (Ray restarts a crashed process) but ``max_task_retries=0``:
a call silently retried on a freshly restarted actor would compute gradients with initial weights. Instead a
failed call makes the driver resync the actor (or, once Ray gives up on it, replace it with a new one) from its
own weights, optimizer and that worker's RNG state, and re-issue the call. A search that loses a worker therefore
continues with exactly the numbers it would have produced without the failure.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from n2nas.errors import ConfigError, N2NASError
from n2nas.runners.runner import Runner
from n2nas.runners.flat_weights import FlatLayout, interleave, rng_state, set_rng_state, worker_seed
from n2nas.runners.local import LocalRunner, load_weights_and_optimizer, weights_and_optimizer
from n2nas.train.numerics import use_cpu_threads

_UNSYNCED = "n2nas-unsynced-replica"


class RayWorker:
    """One replica in its own process. It refuses work until the driver has synced it, so an actor that Ray
    restarted behind the driver's back can never train or score with stale (initial) weights."""

    def __init__(self, setup: dict[str, Any], dataset_box: list, worker: int):
        import ray

        dataset = ray.get(dataset_box[0])  # boxed: Ray resolves it here, not as a restart-fragile argument
        use_cpu_threads(setup["threads"])
        seed = worker_seed(setup["seed"], worker)
        torch.manual_seed(seed)
        ctx = setup["space_def"].make_context(dataset, setup["train_idx"], setup["val_idx"], setup["cache_dir"],
                                              setup["data_workers"])
        use_gpu = setup["gpus"] > 0 and torch.cuda.is_available()
        device = torch.device("cuda" if use_gpu else "cpu")
        self.runner = LocalRunner(setup["space_def"], ctx, setup["shared"], device, seed, worker=worker)
        self.layout = FlatLayout(self.runner.supernet)
        self.synced = False
        if setup.get("measure") is not None:
            self.runner.set_measurement(*setup["measure"])

    def set_measurement(self, measure, reward) -> None:
        """Measure latency/energy per scored child with this worker's own meter (see LocalRunner)."""
        self.runner.set_measurement(measure, reward)

    def sync(self, state: dict[str, Any], rng: dict[str, Any] | None) -> dict[str, Any]:
        """Take the driver's weights and optimizer (and this worker's RNG state when known); returns the RNG state."""
        load_weights_and_optimizer(self.runner, state)
        if rng is not None:
            set_rng_state(self.runner, rng)
        self.synced = True
        return rng_state(self.runner)

    def step(self, total: np.ndarray | None, sample: dict[str, Any] | None, rule: str | None = None):
        """Apply the previous round's summed step (if any), then this worker's contribution for ``sample``
        (trained with ``rule``, or the configured rule when None)."""
        if not self.synced:
            return _UNSYNCED
        if total is not None:
            self.layout.apply_step(self.runner, total)
        loss = self.runner.child_gradient(sample, rule) if sample is not None else None
        return self.layout.pack_step(loss), rng_state(self.runner)

    def finish(self, total: np.ndarray | None):
        """Apply the last round's summed step."""
        if not self.synced:
            return _UNSYNCED
        if total is not None:
            self.layout.apply_step(self.runner, total)
        return None, rng_state(self.runner)

    def score(self, samples: list[dict[str, Any]], records: np.ndarray, limits: bool = True):
        """LocalRunner.score on this worker's share; torch's RNG is forked so that building a child for its cost
        (memoised per process) never shifts the dropout stream that training draws from."""
        if not self.synced:
            return _UNSYNCED
        with torch.random.fork_rng(devices=[]):
            results = self.runner.score(samples, records, limits)
        return results, rng_state(self.runner)


class RayRunner(Runner):
    """Trains and scores on ``config.workers`` Ray actors; see the module docstring for the protocol."""

    def __init__(self, config, space_def, ctx, shared, device: torch.device, seed: int):
        import ray

        self.config = config
        self._started_ray = _init_ray(config)
        self.replica = LocalRunner(space_def, ctx, shared, device, seed)
        self.layout = FlatLayout(self.replica.supernet)
        self._setup = {"space_def": space_def, "train_idx": ctx.train_idx, "val_idx": ctx.val_idx,
                       "cache_dir": getattr(ctx, "cache_dir", None), "data_workers": getattr(ctx, "workers", 1),
                       "shared": shared, "seed": seed, "gpus": config.gpus_per_worker,
                       "threads": max(1, int(config.cpus_per_worker)), "measure": None}
        self._dataset_ref = ray.put(ctx.dataset)
        self._actor_cls = ray.remote(RayWorker).options(
            num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker,
            max_restarts=config.max_restarts, max_task_retries=0)
        self.revived = 0
        self._actors = [self._actor_cls.remote(self._setup, [self._dataset_ref], k) for k in range(config.workers)]
        state = ray.put(weights_and_optimizer(self.replica))
        self._worker_rng: list[dict | None] = ray.get([a.sync.remote(state, None) for a in self._actors])

    @property
    def actors(self) -> list:
        """The live actor handles, worker ``k`` at index ``k``."""
        return list(self._actors)

    def _revive(self, k: int) -> None:
        """Resync worker ``k`` from the driver; replace it when Ray cannot restart it any more."""
        import ray
        from ray.exceptions import RayActorError

        self.revived += 1
        state = ray.put(weights_and_optimizer(self.replica))
        try:
            ray.get(self._actors[k].sync.remote(state, self._worker_rng[k]))
            return
        except RayActorError:
            pass  # permanently dead (killed, or out of restarts): start a new one
        try:
            ray.kill(self._actors[k], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone is fine
            pass
        self._actors[k] = self._actor_cls.remote(self._setup, [self._dataset_ref], k)
        ray.get(self._actors[k].sync.remote(state, self._worker_rng[k]))

    def _run(self, method: str, args_per_worker: dict[int, tuple]) -> dict[int, Any]:
        """Call ``method`` on the given workers in parallel; a dead or unsynced worker is revived and its call
        re-issued. A resynced worker already holds the driver's state, so a step's ``total`` is not re-applied."""
        import ray
        from ray.exceptions import RayActorError

        refs = {k: getattr(self._actors[k], method).remote(*a) for k, a in args_per_worker.items()}
        out = {}
        for k, args in args_per_worker.items():
            for attempt in range(self.config.call_retries + 1):
                try:
                    value = ray.get(refs[k])
                    if not (isinstance(value, str) and value == _UNSYNCED):
                        out[k] = value
                        break
                except RayActorError:
                    pass
                if attempt == self.config.call_retries:
                    raise N2NASError(f"Ray worker {k} failed {attempt + 1} times in {method}; giving up")
                self._revive(k)
                if method in ("step", "finish"):
                    args = (None,) + tuple(args[1:])
                refs[k] = getattr(self._actors[k], method).remote(*args)
        for k, value in out.items():
            self._worker_rng[k] = value[1]
        return out

    def local_replica(self) -> LocalRunner:
        """The driver's in-sync replica."""
        return self.replica

    def set_measurement(self, measure, reward=None, meter=None) -> None:
        """Per-child latency/energy measurement: the driver keeps ``meter``; each worker (and any replacement)
        measures with a meter of its own, on its own device."""
        import ray

        self.replica.set_measurement(measure, reward, meter)
        self._setup = {**self._setup, "measure": (measure, reward)}
        ray.get([a.set_measurement.remote(measure, reward) for a in self._actors])

    def train_shared(self, samples, rule=None):
        """Synchronous data-parallel steps, ``W`` children per step (one per worker), each with ``rule``."""
        import ray

        w = len(self._actors)
        total_ref, losses, failed = None, [], 0
        for start in range(0, len(samples), w):
            chunk = samples[start:start + w]
            out = self._run("step", {k: (total_ref, chunk[k] if k < len(chunk) else None, rule) for k in range(w)})
            total = np.sum(np.stack([out[k][0] for k in range(w)]), axis=0, dtype=np.float32)
            loss, n_ok = self.layout.apply_step(self.replica, total)
            failed += len(chunk) - n_ok
            if loss is not None:
                losses.append(loss)
            total_ref = ray.put(total)
        if total_ref is not None:
            self._run("finish", {k: (total_ref,) for k in range(w)})
        return {"shared_loss": float(np.mean(losses)) if losses else math.nan, "shared_failed": failed,
                "workers_revived": self.revived}

    def score(self, samples, records, limits=True):
        """Children split across the actors; results in the order of ``samples``."""
        w = len(self._actors)
        parts = [samples[k::w] for k in range(w)]
        out = self._run("score", {k: (parts[k], records, limits) for k in range(w) if parts[k]})
        return interleave([out[k][0] if k in out else [] for k in range(w)], len(samples))

    def state_dict(self):
        """The driver's weights and optimizer (shared by every replica) and each worker's RNG state."""
        return {**weights_and_optimizer(self.replica), "workers": list(self._worker_rng)}

    def load_state_dict(self, state):
        """Restore the driver's replica and resync every worker from it."""
        import ray

        load_weights_and_optimizer(self.replica, state)
        if len(state["workers"]) != len(self._actors):
            raise ConfigError("--workers", f"checkpoint has {len(state['workers'])} Ray workers, "
                                           f"this run {len(self._actors)}")
        shared = ray.put(weights_and_optimizer(self.replica))
        self._worker_rng = ray.get([a.sync.remote(shared, rng) for a, rng in zip(self._actors, state["workers"])])

    def close(self):
        """Stop the actors, and Ray itself when this runner started it."""
        import ray

        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - a dead actor needs no killing
                pass
        self._actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


def _init_ray(config) -> bool:
    """Join ``config.address`` (or start a local Ray when None); True when this call started Ray.

    A local Ray gets at least enough CPUs for every worker (oversubscribing a small machine beats actors that
    wait forever for resources); a cluster that is too small is an error naming ``--workers``.
    """
    import os

    import ray

    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if config.address is None:
            need = math.ceil(config.workers * config.cpus_per_worker)
            kwargs["num_cpus"] = max(os.cpu_count() or 1, need)
        ray.init(address=config.address, **kwargs)
        started = True
    resources = ray.cluster_resources()
    for key, per in (("CPU", config.cpus_per_worker), ("GPU", config.gpus_per_worker)):
        if per > 0 and resources.get(key, 0) < per * config.workers:
            if started:
                ray.shutdown()
            raise ConfigError("--workers", f"{config.workers} workers need {per * config.workers:g} {key}s; "
                                           f"the Ray cluster has {resources.get(key, 0):g}")
    return started
