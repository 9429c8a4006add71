"""CPU floating-point settings for training and scoring: denormals flushed to zero.

Weights cut from a supernet carry many denormal values (below ~1.2e-38 in float32): run 4's 0.33-GFLOP member had
96,863 of its 1.18 M parameters there. x86 CPUs compute with denormals in microcode, and a training step of that
member took 1.98 s on one thread against 0.35 s for the same net freshly initialised, or 0.34 s with denormals
flushed (``benchmarks/denormals.py``, docs/benchmarks.md#denormal-weights). Flushing changes no value above 1.2e-38, so it changes no score.

The flag is per thread: a thread created later inherits its creator's, so it is set in each process before torch's
thread pool starts (the CLI, every worker, every benchmark job), and again by the trainer for the calling thread.
"""
from __future__ import annotations

import torch
from torch import nn


def flush_denormals() -> bool:
    """Compute with denormal floats as zero on this thread and the threads it starts from now on (x86 FTZ/DAZ,
    ARM FZ); returns whether the CPU supports it."""
    return bool(torch.set_flush_denormal(True))


def use_cpu_threads(threads: int) -> None:
    """Set torch's intra-op thread count to ``threads`` with denormals flushed, before the pool's threads exist."""
    flush_denormals()
    torch.set_num_threads(max(1, int(threads)))


# (the integer type of the same width, exponent bits, mantissa bits): a float is denormal when its exponent bits are
# all zero and its mantissa is not. Read from the bits because a process that flushes denormals (this one, usually)
# also compares them as zero, so ``x != 0`` cannot find them.
_BITS = {torch.float32: (torch.int32, 0x7F800000, 0x007FFFFF), torch.float64: (torch.int64, 0x7FF << 52, (1 << 52) - 1),
         torch.float16: (torch.int16, 0x7C00, 0x03FF), torch.bfloat16: (torch.int16, 0x7F80, 0x007F)}


def denormal_mask(tensor: torch.Tensor) -> torch.Tensor:
    """Where ``tensor`` (a floating-point tensor) holds denormal values, whether or not this thread flushes them."""
    int_type, exponent, mantissa = _BITS[tensor.dtype]
    bits = tensor.contiguous().view(int_type)
    return ((bits & exponent) == 0) & ((bits & mantissa) != 0)


def zero_denormals(model: nn.Module) -> int:
    """Set every denormal value of ``model``'s floating-point parameters and buffers to zero, so that a saved or
    exported model runs at full speed on a runtime that does not flush them; returns how many were set."""
    count = 0
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dtype not in _BITS:
                continue
            tiny = denormal_mask(tensor)
            n = int(tiny.sum())
            if n:
                tensor.masked_fill_(tiny.view(tensor.shape), 0.0)
                count += n
    return count
