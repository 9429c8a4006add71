"""DiagnoseNET-style MLPs for EHR rows: a standalone child and the width-sliced, depth-choosing supernet.

A child with ``units`` = u and ``layers`` = L (hidden layers) is
``Linear(F, u) -> act -> dropout -> (L - 1) x [Linear(u, u) -> act -> dropout] -> Linear(u, C)``, every Linear
with a bias and no normalisation: exactly the parameter counts of DiagnoseNET's Table 4
(``F*u + u + (L-1)*(u*u + u) + u*C + C``; 14637 inputs, 14 classes, 2 x 128 -> 1,892,750).

The first layer accepts a ``torch.sparse_coo_tensor`` batch as well as a dense one, so sparse patient rows are
multiplied without ever being densified.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("relu", "tanh", "linear")


def activate(x: torch.Tensor, name: str) -> torch.Tensor:
    """relu, tanh, or linear (identity)."""
    if name == "relu":
        return F.relu(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "linear":
        return x
    raise ValueError(f"unknown activation {name!r} (known: {', '.join(ACTIVATIONS)})")


def sparse_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T + bias`` for a dense or sparse COO ``x``."""
    if x.is_sparse:
        return torch.sparse.mm(x, weight.t()) + bias
    return F.linear(x, weight, bias)


class SparseLinear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) that also takes sparse COO input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sparse_linear(x, self.weight, self.bias)


def mlp_params(n_in: int, units: int, layers: int, n_out: int) -> int:
    """Closed-form parameter count of a child (weights + biases)."""
    return n_in * units + units + (layers - 1) * (units * units + units) + units * n_out + n_out


class MLP(nn.Module):
    """The standalone child network (a plain ``nn.Module``)."""

    def __init__(self, n_in: int, units: int, layers: int, activation: str, dropout: float, n_out: int):
        super().__init__()
        if layers < 1 or units < 1:
            raise ValueError("an MLP needs at least one hidden layer of at least one unit")
        activate(torch.zeros(1), activation)  # fail early on an unknown activation
        self.activation, self.dropout = activation, float(dropout)
        self.hidden = nn.ModuleList([SparseLinear(n_in, units)] +
                                    [nn.Linear(units, units) for _ in range(layers - 1)])
        self.head = nn.Linear(units, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = F.dropout(activate(layer(x), self.activation), self.dropout, self.training)
        return self.head(x)


class MLPSupernet(nn.Module):
    """Weight-shared MLP: ``max_layers`` hidden layers of ``max_units``; a child uses the first ``layers`` of them
    and the first ``units`` units of each (rows of a layer's weight, and the matching input columns of the next)."""

    def __init__(self, n_in: int, max_units: int, max_layers: int, n_out: int):
        super().__init__()
        self.max_units, self.max_layers = max_units, max_layers
        self.hidden = nn.ModuleList([SparseLinear(n_in, max_units)] +
                                    [nn.Linear(max_units, max_units) for _ in range(max_layers - 1)])
        self.head = nn.Linear(max_units, n_out)

    def _check(self, sample: dict[str, Any]) -> tuple[int, int]:
        k, depth = int(sample["units"]), int(sample["layers"])
        if not 1 <= k <= self.max_units or not 1 <= depth <= self.max_layers:
            raise ValueError(f"child {depth} x {k} does not fit the supernet {self.max_layers} x {self.max_units}")
        return k, depth

    def forward(self, x: torch.Tensor, sample: dict[str, Any]) -> torch.Tensor:
        """Run the child ``sample`` names (``units``, ``layers``, ``activation``, ``dropout``)."""
        k, depth = self._check(sample)
        act, p = sample["activation"], float(sample["dropout"])
        for i in range(depth):
            layer = self.hidden[i]
            weight = layer.weight[:k] if i == 0 else layer.weight[:k, :k]
            x = F.dropout(activate(sparse_linear(x, weight, layer.bias[:k]), act), p, self.training)
        return F.linear(x, self.head.weight[:, :k], self.head.bias)


@torch.no_grad()
def copy_shared_weights(supernet: MLPSupernet, child: MLP, sample: dict[str, Any]) -> None:
    """Load the supernet's slice for ``sample`` into ``child`` (then both compute the same function)."""
    k, depth = supernet._check(sample)
    for i, (src, dst) in enumerate(zip(supernet.hidden[:depth], child.hidden)):
        dst.weight.copy_(src.weight[:k] if i == 0 else src.weight[:k, :k])
        dst.bias.copy_(src.bias[:k])
    child.head.weight.copy_(supernet.head.weight[:, :k])
    child.head.bias.copy_(supernet.head.bias)
