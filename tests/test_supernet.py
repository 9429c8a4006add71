"""Weight-shared ECG supernet: every candidate runs, only sampled candidates learn, children match exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from n2nas.supernet.blocks import skip_key
from n2nas.supernet.ops import parse_op
from search_spaces import get_space
from search_spaces.ecg import ACTIVATION_NAMES, DILATIONS, OPS


@pytest.fixture(scope="module")
def small():
    return get_space("ecg-small")


def _arch_sample(space_def, rng, op, dilation, activation, width):
    """A random sample with every layer's op/dilation/activation forced (skips and the rest random)."""
    sample = space_def.space.random_sample(rng)
    sample["width"] = width
    for i in range(space_def.config.n_layers):
        sample.update({f"layer{i}/op": op, f"layer{i}/dilation": dilation, f"layer{i}/activation": activation})
    return sample


def _all_combinations(space_def, seed=0):
    """Samples that together use every op, dilation, activation and width."""
    rng = np.random.default_rng(seed)
    widths = space_def.config.widths
    for k, op in enumerate(OPS):
        yield _arch_sample(space_def, rng, op, DILATIONS[k % 3], ACTIVATION_NAMES[k % 4], widths[k % len(widths)])


@pytest.mark.parametrize("shape", [(2, 1, 1000), (2, 12, 500)])
def test_every_candidate_runs_and_only_sampled_candidates_get_gradients(small, shape):
    torch.manual_seed(0)
    supernet = small.build_supernet(shape[1], 5).train()
    lay = supernet.layout
    x = torch.randn(shape)
    for sample in _all_combinations(small):
        supernet.zero_grad(set_to_none=True)
        out = supernet(x, sample)
        assert out.shape == (shape[0], 5) and torch.isfinite(out).all()
        out.square().sum().backward()
        w = small.config.widths.index(sample["width"])
        for i, block in enumerate(supernet.layers):
            chosen, taps = parse_op(sample[f"layer{i}/op"])
            for name, family in block.families.items():
                grads = [p.grad for p in family.parameters()]
                if name != chosen:  # never ran: not even a zero gradient
                    assert all(g is None for g in grads), (i, name)
                    continue
                assert all(g is not None and g.any() for g in grads), (i, name)
                c = lay.channels[i][w]
                for p in family.parameters():  # channels beyond the sampled width are not trained
                    assert not p.grad[c:].any() and (p.shape[1] == 1 or not p.grad[:, c:].any())
                    start = (p.shape[-1] - taps) // 2 if p.shape[-1] > 1 else 0
                    if p.shape[-1] > 1:  # only the centre taps of the shared kernel are used and trained
                        assert not p.grad[..., :start].any() and not p.grad[..., start + taps:].any()
                        assert p.grad[:c, ..., start:start + taps].any()
            for k, bn in enumerate(block.bn.bns):
                assert (bn.weight.grad is not None) == (k == w), (i, k)
            for j, on in enumerate(sample[f"layer{i}/skip"]):
                proj = supernet.skips[skip_key(j, i)].proj
                if proj is not None:
                    assert (proj.weight.grad is not None) == bool(on), (j, i)


def _assert_child_structure(space_def, child, sample, n_leads):
    lay = space_def.layout
    w = space_def.config.widths.index(sample["width"])
    assert child.stem.weight.shape[:2] == (lay.channels[0][w], n_leads)
    for i, layer in enumerate(child.layers):
        op, d = sample[f"layer{i}/op"], sample[f"layer{i}/dilation"]
        c = lay.channels[i][w]
        mod = layer.block.op
        if op.startswith("conv"):
            assert isinstance(mod, nn.Conv1d) and mod.kernel_size == (int(op[4:]),) and mod.dilation == (d,)
            assert mod.in_channels == mod.out_channels == c and mod.groups == 1
        elif op.startswith("sep"):
            dw, pw = mod.depthwise, mod.pointwise
            assert dw.kernel_size == (int(op[3:]),) and dw.groups == c and dw.dilation == (d,)
            assert pw.kernel_size == (1,) and pw.in_channels == pw.out_channels == c
        else:
            assert isinstance(mod, nn.MaxPool1d if op == "maxpool3" else nn.AvgPool1d)
        act = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}[sample[f"layer{i}/activation"]]
        assert isinstance(layer.block.act, act)
        assert layer.sources == [j for j, on in enumerate(sample[f"layer{i}/skip"]) if on]
        assert len(layer.skips) == len(layer.sources)


@pytest.mark.parametrize("name,shape", [("ecg-small", (3, 1, 1000)), ("ecg-small", (2, 12, 517)),
                                        ("ecg-cpu", (2, 1, 800)), ("ecg", (2, 12, 500))])
def test_copy_shared_weights_makes_child_equal_supernet(name, shape):
    space_def = get_space(name)
    torch.manual_seed(1)
    supernet = space_def.build_supernet(shape[1], 4)
    n_super = sum(p.numel() for p in supernet.parameters())
    rng = np.random.default_rng(2)
    x = torch.randn(shape)
    samples = [space_def.space.random_sample(rng) for _ in range(4)] + [space_def.space.default_sample()]
    for sample in samples:
        sample["dropout"] = 0.0  # lets train mode be compared too
        supernet.train()
        with torch.no_grad():  # move the running statistics away from their (0, 1) start
            supernet(x, sample)
        child = space_def.build_child(sample, shape[1], 4)
        _assert_child_structure(space_def, child, sample, shape[1])
        assert sum(p.numel() for p in child.parameters()) < n_super
        space_def.copy_shared_weights(supernet, child, sample)
        child.train()
        torch.testing.assert_close(child(x), supernet(x, sample), rtol=1e-5, atol=1e-5)
        supernet.eval()
        child.eval()
        with torch.no_grad():
            torch.testing.assert_close(child(x), supernet(x, sample), rtol=1e-5, atol=1e-5)


def test_fresh_child_is_freshly_initialised_not_shared(small):
    torch.manual_seed(0)
    supernet = small.build_supernet(1, 4)
    sample = small.space.default_sample()
    child = small.build_child(sample, 1, 4)
    assert not torch.equal(child.stem.weight, supernet.child_state(sample)["stem.weight"])
    assert all(p.device.type == "cpu" for p in child.parameters())  # not left on the meta device


def _conv_params(model):
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv1d))


def test_half_width_child_has_a_quarter_of_the_conv_parameters(small):
    rng = np.random.default_rng(0)
    for op in ("conv9", "sep5"):
        full = _arch_sample(small, rng, op, 1, "relu", 1.0)
        half = {**full, "width": 0.5}
        ratio = _conv_params(small.build_child(half, 1, 4)) / _conv_params(small.build_child(full, 1, 4))
        # 1x1 and full convolutions scale by 1/4; the 1-lead stem and depthwise filters only by 1/2
        assert 0.24 < ratio < (0.27 if op == "conv9" else 0.30), (op, ratio)


def test_supernet_and_child_count_the_same_flops(small):
    supernet = small.build_supernet(1, 4).eval()
    x = torch.randn(1, 1, 3000)
    for sample in list(_all_combinations(small))[:6]:
        child = small.build_child(sample, 1, 4).eval()
        counts = []
        for fn in (lambda: supernet(x, sample), lambda: child(x)):
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                fn()
            counts.append(counter.get_total_flops())
        assert counts[0] == counts[1] > 0


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_child_is_scriptable_and_takes_any_length(small):
    sample = small.space.random_sample(np.random.default_rng(3))
    child = small.build_child(sample, 2, 3).eval()
    scripted = torch.jit.script(child)
    for length in (37, 640, 3001):
        x = torch.randn(2, 2, length)
        torch.testing.assert_close(scripted(x), child(x))
        assert child(x).shape == (2, 3)


def test_kernel_sizes_share_one_centred_weight(small):
    supernet = small.build_supernet(1, 4)
    block = supernet.layers[2]
    w = len(small.config.widths) - 1
    for family in ("conv", "sep"):
        big = block.child_state(w, f"{family}15")
        key = "op.weight" if family == "conv" else "op.depthwise.weight"
        for k in (3, 5, 7, 9):
            small_k = block.child_state(w, f"{family}{k}")[key]
            start = (15 - k) // 2
            assert torch.equal(small_k, big[key][..., start:start + k])  # one tensor, cut at the centre
    assert sum(p.numel() for p in block.families["conv"].parameters()) == block.channels[-1] ** 2 * 15
