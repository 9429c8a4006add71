"""Pieces the Ray and MPI runners share: one flat vector per synchronous step, the asynchronous fold,
convergence tracking, per-worker seeds and RNG states.

A synchronous step vector is ``[gradients | used flag per parameter tensor | buffers | loss, ok, replicas]``.
Summing the vectors of every worker (an Allreduce, or the Ray driver's sum) and applying the sum on every replica
keeps all replicas bit-identical: the same numbers go through the same optimizer. A parameter no worker's child
touched keeps ``grad = None``, so Adam skips it exactly as it does in the one-process runner. BatchNorm running
statistics are buffers, not gradients; they are averaged over replicas every step, or replicas would drift apart.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from n2nas.storage import numpy_rng_state, restore_numpy_rng


def worker_seed(seed: int, worker: int) -> int:
    """Worker 0 uses the search seed itself (so one worker reproduces the local runner); others are offset."""
    return seed if worker == 0 else seed + 7919 * worker


class FlatLayout:
    """Where every parameter, flag and buffer of one module lives in the flat step vector."""

    def __init__(self, module: torch.nn.Module):
        self.params = list(module.parameters())
        self.buffers = [b for _, b in module.named_buffers()]
        self.n_params = sum(p.numel() for p in self.params)
        self.n_tensors = len(self.params)
        self.n_buffers = sum(b.numel() for b in self.buffers)
        self.size = self.n_params + self.n_tensors + self.n_buffers + 3

    def _buffer_vector(self) -> torch.Tensor:
        if not self.buffers:
            return torch.zeros(0)
        return torch.cat([b.detach().reshape(-1).float().cpu() for b in self.buffers])

    def _set_buffers(self, values: np.ndarray) -> None:
        offset = 0
        for b in self.buffers:
            chunk = torch.from_numpy(values[offset:offset + b.numel()].copy()).view_as(b)
            b.copy_(chunk.round() if not b.dtype.is_floating_point else chunk)
            offset += b.numel()

    def pack_step(self, loss: float | None) -> np.ndarray:
        """This worker's contribution to one synchronous step (gradients only when ``loss`` is not None)."""
        out = np.zeros(self.size, np.float32)
        if loss is not None:
            grads, flags = [], np.zeros(self.n_tensors, np.float32)
            for i, p in enumerate(self.params):
                if p.grad is None:
                    grads.append(torch.zeros(p.numel()))
                else:
                    grads.append(p.grad.detach().reshape(-1).float().cpu())
                    flags[i] = 1.0
            out[:self.n_params] = torch.cat(grads).numpy()
            out[self.n_params:self.n_params + self.n_tensors] = flags
        start = self.n_params + self.n_tensors
        out[start:start + self.n_buffers] = self._buffer_vector().numpy()
        out[-3:] = (loss if loss is not None else 0.0, float(loss is not None), 1.0)
        return out

    def apply_step(self, runner, total: np.ndarray) -> tuple[float | None, int]:
        """Apply the summed step on ``runner`` (a LocalRunner replica): averaged buffers, then, when any worker
        had a finite loss, the gradient averaged over those workers, clipped, and one optimizer step.

        Returns (mean loss of the contributing workers or None, number of contributing workers).
        """
        n_ok, n_replicas = int(round(float(total[-2]))), int(round(float(total[-1])))
        start = self.n_params + self.n_tensors
        with torch.no_grad():
            self._set_buffers(total[start:start + self.n_buffers] / max(n_replicas, 1))
        if n_ok == 0:
            return None, 0
        grads = torch.from_numpy(total[:self.n_params].copy()).div(n_ok)  # ``total`` may be read-only (Ray)
        offset = 0
        for i, p in enumerate(self.params):
            n = p.numel()
            used = total[self.n_params + i] > 0
            p.grad = grads[offset:offset + n].view_as(p).to(p.device, p.dtype) if used else None
            offset += n
        runner.apply_gradients()
        return float(total[-3]) / n_ok, n_ok

    def state_vector(self) -> np.ndarray:
        """Parameters then buffers as one float32 vector (what the asynchronous server folds)."""
        with torch.no_grad():
            params = torch.cat([p.detach().reshape(-1).float().cpu() for p in self.params])
            return torch.cat([params, self._buffer_vector()]).numpy()

    def load_state_vector(self, vector: np.ndarray) -> None:
        """Inverse of :meth:`state_vector`."""
        offset = 0
        with torch.no_grad():
            for p in self.params:
                p.copy_(torch.from_numpy(vector[offset:offset + p.numel()].copy()).view_as(p))
                offset += p.numel()
            self._set_buffers(vector[offset:offset + self.n_buffers])


def fold(history: np.ndarray, update: np.ndarray, weighting: float) -> np.ndarray:
    """DiagnoseNET's asynchronous merge, in place: ``history <- (w * history + update) / (w + 1)``.

    The history keeps weight ``w/(w+1)``. DiagnoseNET computed this average but never stored it back, so its
    history never moved; here the result *is* the new history (and is returned for convenience).
    """
    history *= weighting / (weighting + 1.0)
    history += update * np.float32(1.0 / (weighting + 1.0))
    return history


class Convergence:
    """A worker has converged once its loss failed to improve the best by ``tol`` (relative) ``patience`` times."""

    def __init__(self, tol: float, patience: int):
        self.tol, self.patience = tol, patience
        self.reset()

    def reset(self) -> None:
        """Forget the loss history (each shared phase starts fresh)."""
        self.best, self.stalled = float("inf"), 0

    def update(self, loss: float | None) -> bool:
        """Record one exchange's mean loss (None: no finite loss, counts as no progress); True once converged."""
        improved = loss is not None and (self.best == float("inf") or loss < self.best * (1.0 - self.tol))
        if improved:
            self.best, self.stalled = float(loss), 0
        else:
            self.stalled += 1
        return self.stalled >= self.patience


def rng_state(runner) -> dict[str, Any]:
    """A replica's random state: batch sampling, augmentation generator and torch's global RNG (dropout, init)."""
    return {"numpy_rng": numpy_rng_state(runner.rng), "torch_generator": runner.generator.get_state(),
            "torch_rng": torch.get_rng_state()}


def set_rng_state(runner, state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    restore_numpy_rng(runner.rng, state["numpy_rng"])
    runner.generator.set_state(state["torch_generator"])
    torch.set_rng_state(state["torch_rng"])


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in order: equal digests mean bit-identical replicas."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def interleave(parts: list[list[Any]], n: int) -> list[Any]:
    """Undo a ``items[k::W]`` split: ``parts[k][j]`` is item ``j * W + k``."""
    out: list[Any] = [None] * n
    for k, part in enumerate(parts):
        out[k::len(parts)] = part
    return out
