"""Batch-time windows and augmentations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from n2nas.data.augment import AugmentConfig, augment_batch, time_stretch
from n2nas.data.windows import (WindowConfig, apply_global_stats, eval_windows, global_stats, train_windows,
                                window_length)
from tests.helpers import prepared_from_arrays


def ramp_records(lengths, fs=100.0, leads=1):
    """Records whose samples equal their position + 1 (so a window tells where it came from); 0 means padding."""
    sigs = [np.tile(np.arange(1, n + 1, dtype=np.float32), (leads, 1)) for n in lengths]
    return prepared_from_arrays([f"r{i}" for i in range(len(lengths))], fs, sigs)


def test_train_crops_are_contiguous_slices_or_padded():
    p = ramp_records([1000, 300])
    cfg = WindowConfig(seconds=5)  # 500 samples
    x = train_windows(p, np.array([0, 1, 0]), cfg, np.random.default_rng(0))
    assert x.shape == (3, 1, 500)
    assert np.all(np.diff(x[0, 0]) == 1)  # a real contiguous slice of record 0
    short = x[1, 0]
    assert (short > 0).sum() == 300 and np.all(np.diff(short[short > 0]) == 1)


def test_eval_crops_cover_the_whole_record():
    p = ramp_records([1234])
    w = eval_windows(p, 0, WindowConfig(seconds=5))
    assert w[0, 0, 0] == 1 and w[-1, 0, -1] == 1234  # first starts at 0, last ends at the end
    covered = np.unique(w[w > 0])
    assert np.array_equal(covered, np.arange(1, 1235))
    single = eval_windows(ramp_records([200]), 0, WindowConfig(seconds=5))
    assert single.shape == (1, 1, 500) and (single > 0).sum() == 200


def test_beat_windows_are_centred_on_r_peaks():
    sig = [np.arange(1, 5001, dtype=np.float32)[None, :]]
    peaks = [np.arange(300, 4800, 400)]
    p = prepared_from_arrays(["r"], 300.0, sig, peaks)
    cfg = WindowConfig.diagnosenet()
    x = train_windows(p, np.array([0]), cfg, np.random.default_rng(1))
    assert x.shape == (1, 1, 5 * 260)
    centres = x[0, 0].reshape(5, 260)[:, 130] - 1  # sample index at each window's centre
    assert set(centres.astype(int)) <= set(peaks[0]) and np.all(np.diff(centres) == 400)
    runs = eval_windows(p, 0, cfg)
    first_beats = runs[:, 0, 130] - 1
    assert first_beats[0] == peaks[0][0] and runs[-1, 0, -130] - 1 == peaks[0][-1]


def test_window_length_per_mode():
    assert window_length(WindowConfig(seconds=10), 300) == 3000
    assert window_length(WindowConfig.diagnosenet(), 300) == 1300


def test_global_stats_use_training_records_only():
    p = prepared_from_arrays(["a", "b"], 100.0, [np.zeros((1, 100), np.float32),
                                                        np.full((1, 100), 10.0, np.float32)])
    stats = global_stats(p, np.array([0]))
    assert stats.mean[0] == 0
    both = global_stats(p, np.array([0, 1]))
    assert both.mean[0] == pytest.approx(5) and both.std[0] == pytest.approx(5)
    z = apply_global_stats(np.full((1, 1, 4), 10.0, np.float32), both)
    assert np.allclose(z, 1.0)


def test_augmentation_is_seeded_and_leaves_input_alone():
    x = torch.randn(6, 3, 400)
    y = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    x0 = x.clone()
    a = augment_batch(x, y, AugmentConfig.strong(), torch.Generator().manual_seed(3))
    b = augment_batch(x, y, AugmentConfig.strong(), torch.Generator().manual_seed(3))
    c = augment_batch(x, y, AugmentConfig.strong(), torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert torch.equal(x, x0) and a[0].shape == x.shape
    assert torch.allclose(a[1].sum(1), torch.ones(6))  # mixup targets stay convex combinations
    assert (a[1] >= 0.5 - 1e-6).any(dim=1).all()


def test_flip_flips_and_lead_dropout_never_silences_everything():
    x = torch.randn(64, 2, 50)
    flipped, _ = augment_batch(x, torch.zeros(64, 2), AugmentConfig(flip_p=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(flipped, -x)
    dropped, _ = augment_batch(x, torch.zeros(64, 2), AugmentConfig(lead_dropout_p=1.0),
                               torch.Generator().manual_seed(0))
    alive = (dropped.abs().sum(-1) > 0).sum(1)
    assert torch.all(alive == 1)


def test_time_stretch_moves_features_by_the_factor():
    x = torch.zeros(1, 1, 1000)
    x[0, 0, 100] = 1.0
    slower = time_stretch(x, torch.tensor([2.0]))
    assert int(slower[0, 0].argmax()) == 200
    assert torch.equal(time_stretch(x, torch.tensor([1.0])), x)
