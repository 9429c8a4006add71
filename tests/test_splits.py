"""Splits are seeded, stratified, disjoint and record-level; shards and micro-batches cover everything once."""
from __future__ import annotations

import numpy as np
import pytest

from n2nas.data.record import Dataset, Record
from n2nas.data.splits import (Split, class_weights, iterative_stratification, loss_class_weights, micro_batches,
                               stratified_split)
from n2nas.data.spec import load_dataset
from n2nas.errors import DataError


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


def test_split_is_seeded_disjoint_and_stratified(sample):
    a = stratified_split(sample, val=0.2, test=0.2, seed=3)
    b = stratified_split(sample, val=0.2, test=0.2, seed=3)
    c = stratified_split(sample, val=0.2, test=0.2, seed=4)
    assert a == b and a != c
    parts = [set(a.train), set(a.val), set(a.test)]
    assert sum(map(len, parts)) == len(sample) == len(set().union(*parts))
    labels = {r.id: r.labels[0] for r in sample.records}
    for part in (a.val, a.test):
        shares = {k: sum(labels[i] == k for i in part) / len(part) for k in "NAO~"}
        overall = {k: sum(v == k for v in labels.values()) / len(labels) for k in "NAO~"}
        assert all(abs(shares[k] - overall[k]) < 0.03 for k in "NAO~")


def test_split_roundtrip_and_overlap_rejected(sample, tmp_path):
    s = stratified_split(sample, seed=0)
    s.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == s
    Split(s.train, s.val + s.train[:1]).save(tmp_path / "bad.json")
    with pytest.raises(DataError, match="share record ids"):
        Split.load(tmp_path / "bad.json")


def test_iterative_stratification_keeps_rare_labels_in_every_fold():
    rng = np.random.default_rng(0)
    y = rng.random((400, 6)) < np.array([0.5, 0.2, 0.1, 0.05, 0.03, 0.02])
    folds = iterative_stratification(y, (0.6, 0.2, 0.2), seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(400))
    for f, frac in zip(folds, (0.6, 0.2, 0.2)):
        assert abs(len(f) - frac * 400) <= 6
        # each label's positives split in proportion (to within 2 records)
        assert np.all(np.abs(y[f].sum(0) - frac * y.sum(0)) <= 2.01)


def test_multilabel_dataset_split_uses_iterative_stratification():
    recs = tuple(Record(f"r{i}", np.zeros((1, 10), np.float32), 100.0, ("I",), ("a", "b") if i % 5 == 0 else ("a",))
                 for i in range(50))
    ds = Dataset("t", recs, ("a", "b"), True, "fp")
    s = stratified_split(ds, val=0.2, seed=0)
    b_val = sum(1 for i in s.val if int(i[1:]) % 5 == 0)
    assert len(s.val) == 10 and b_val == 2


def shard(indices: np.ndarray, labels: np.ndarray, rank: int, world_size: int, seed: int = 0) -> np.ndarray:
    """This worker's share of ``indices``: stratified round-robin, so every worker sees the same class mix.

    ``labels`` is one class index per entry of ``indices`` (for multi-label data, e.g. the rarest positive
    class). Shards are disjoint, cover everything, and differ in size by at most one per class.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")
    rng = np.random.default_rng(seed)
    indices, labels = np.asarray(indices), np.asarray(labels)
    order = rng.permutation(len(indices))
    order = order[np.argsort(labels[order], kind="stable")]
    return np.sort(indices[order[rank::world_size]])


def test_shards_are_disjoint_cover_and_balanced():
    idx = np.arange(103)
    labels = np.array([0] * 60 + [1] * 30 + [2] * 13)
    shards = [shard(idx, labels, r, 3, seed=5) for r in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == idx.tolist()
    for s in shards:
        counts = np.bincount(labels[s], minlength=3)
        assert np.all(np.abs(counts - np.array([20, 10, 13 / 3])) <= 1)
    with pytest.raises(ValueError):
        shard(idx, labels, 3, 3)


def test_micro_batches_cover_each_index_once_and_are_seeded():
    idx = np.arange(25)
    a = list(micro_batches(idx, 8, np.random.default_rng(1)))
    b = list(micro_batches(idx, 8, np.random.default_rng(1)))
    assert [len(x) for x in a] == [8, 8, 8, 1]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == idx.tolist()
    assert [len(x) for x in micro_batches(idx, 8, np.random.default_rng(1), drop_last=True)] == [8, 8, 8]


def test_multilabel_loss_weights_are_each_class_negatives_over_positives():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32)
    assert loss_class_weights(y, multilabel=True).tolist() == [1 / 3, 3.0, 1.0]
    single = np.eye(3, dtype=np.float32)[[0, 0, 0, 1]]
    assert loss_class_weights(single, multilabel=False).tolist() == class_weights(np.array([0, 0, 0, 1]), 3).tolist()


def test_class_weights_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert w[0] * 3 == pytest.approx(w[1]) and w[2] == 0
