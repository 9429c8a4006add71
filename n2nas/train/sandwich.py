"""One sandwich-rule step of a weight-shared supernet (BigNAS, Yu et al. 2020), gradients accumulated.

The first child (the largest) learns from the labels; every other child (the smallest and random ones) learns
from the largest's soft outputs on the same batch (in-place distillation), mixed with the labels by
``1 - distill``. Each child's loss is backpropagated on its own (one graph in memory at a time); the gradients
add up in ``.grad`` and the caller takes one optimizer step.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from n2nas.train.primitives import loss_fn


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Cross-entropy of the student's outputs against the (detached) teacher's probabilities: softmax for
    single-label data, per-class sigmoids for multi-label data."""
    teacher = teacher.detach()
    if multilabel:
        return F.binary_cross_entropy_with_logits(student, torch.sigmoid(teacher))
    return -(torch.softmax(teacher, -1) * F.log_softmax(student, -1)).sum(-1).mean()


def sandwich_backward(forward: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor],
                      children: list[dict[str, Any]], x: torch.Tensor, y: torch.Tensor, multilabel: bool,
                      class_weight: torch.Tensor | None = None, distill: float = 1.0) -> dict[str, float] | None:
    """Backpropagate the sandwich losses of ``children`` (the teacher, i.e. the largest, first) on one batch.

    Returns each child's loss (``teacher``, then ``student{k}``: distillation ``kd{k}`` and label loss ``ce{k}``
    parts) and ``loss``, their mean; or None, leaving partial gradients, as soon as one loss is not finite (the
    caller clears them and skips the step).
    """
    logits = forward(x, children[0])
    teacher_loss = loss_fn(logits, y, multilabel, class_weight)
    if not torch.isfinite(teacher_loss):
        return None
    teacher = logits.detach()
    teacher_loss.backward()
    out, total = {"teacher": float(teacher_loss.detach())}, float(teacher_loss.detach())
    for k, child in enumerate(children[1:]):
        student = forward(x, child)
        kd = distillation_loss(student, teacher, multilabel)
        loss = distill * kd
        if distill < 1.0:
            ce = loss_fn(student, y, multilabel, class_weight)
            loss = loss + (1.0 - distill) * ce
            out[f"ce{k}"] = float(ce.detach())
        if not torch.isfinite(loss):
            return None
        loss.backward()
        out[f"kd{k}"], out[f"student{k}"] = float(kd.detach()), float(loss.detach())
        total += float(loss.detach())
    out["loss"] = total / len(children)
    return out
