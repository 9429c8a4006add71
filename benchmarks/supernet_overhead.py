"""Training-step time of a child inside the weight-shared supernet vs the same architecture built standalone.

Usage: python benchmarks/supernet_overhead.py [--space ecg-small] [--children 8] [--repeats 15] [--device auto]

For each seeded random child (architecture tokens sampled, input fixed at 10 s / 300 Hz, 1 lead): time one
optimizer step (forward, backward, Adam step) of ``supernet(x, sample)`` and of ``build_child(sample)`` on the
same batch, alternating the two so machine noise hits both alike; print medians and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2nas.train.primitives import pick_device  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from search_spaces import get_space  # noqa: E402


def step_time(model, forward, x, y, device) -> float:
    """Seconds for one forward/backward/Adam step."""
    opt = step_time.optimizers.setdefault(id(model), torch.optim.Adam(model.parameters(), lr=1e-3))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(forward(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


step_time.optimizers = {}


def main() -> None:
    """Print the per-child table and the median ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="ecg-small")
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(0)
    space_def = get_space(args.space)
    space = space_def.space.pinned({"fs": 300, "window": "crop:10"})
    supernet = space_def.build_supernet(1, 4).to(device).train()
    rng = np.random.default_rng(0)
    x = torch.randn(args.batch, 1, 3000, device=device)
    y = torch.randint(0, 4, (args.batch,), device=device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch} x 1 lead x 3000 samples")
    print(f"{'child':>5} {'params':>9} {'supernet ms':>12} {'standalone ms':>14} {'ratio':>6}")
    ratios = []
    for c in range(args.children):
        sample = space.random_sample(rng)
        child = space_def.build_child(sample, 1, 4).to(device).train()
        sup, alone = [], []
        for r in range(args.repeats + 2):
            a = step_time(supernet, lambda inp: supernet(inp, sample), x, y, device)
            b = step_time(child, child, x, y, device)
            if r >= 2:  # the first steps pay for allocator warm-up and Adam state creation
                sup.append(a)
                alone.append(b)
        ms_sup, ms_alone = 1e3 * statistics.median(sup), 1e3 * statistics.median(alone)
        ratios.append(ms_sup / ms_alone)
        n_params = sum(p.numel() for p in child.parameters())
        print(f"{c:>5} {n_params:>9} {ms_sup:>12.2f} {ms_alone:>14.2f} {ratios[-1]:>6.2f}")
    print(f"median ratio supernet/standalone over {len(ratios)} children: {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    exit_on_error(main, "supernet_overhead.py")
