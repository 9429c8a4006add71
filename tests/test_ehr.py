"""EHR data: the ehr:DIR reader and its bad inputs, sparse batching, the synthetic generator's shape and signal."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from n2nas.cli import main
from n2nas.data.ehr_matrix import load_ehr
from n2nas.data.spec import load_dataset
from n2nas.data.splits import stratified_split
from n2nas.data.synthetic_ehr import CLASS_SHARES, SyntheticEHRConfig, class_counts, feature_layout, synthetic_ehr
from n2nas.errors import DataError


def _folder(tmp_path, X, Y, name="X.npy"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    if name.endswith(".npz"):
        sp.save_npz(tmp_path / name, sp.csr_matrix(X))
    else:
        np.save(tmp_path / name, X)
    if Y is not None:
        np.save(tmp_path / "Y.npy", Y)
    return tmp_path


def test_reader_dense_sparse_single_and_multi_task(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.random((40, 30)) < 0.1).astype(np.float32)
    onehot = np.eye(4, dtype=np.int8)[rng.integers(0, 4, 40)]
    a = load_ehr(_folder(tmp_path / "a", X, onehot))
    b = load_ehr(_folder(tmp_path / "b", X, onehot.argmax(1), "X.npz"))
    assert sp.isspmatrix_csr(a.X) and (a.X != b.X).nnz == 0 and (a.y == b.y).all() and not a.multilabel
    multi = np.hstack([onehot, (rng.random((40, 3)) < 0.5).astype(np.int8)])
    c = load_ehr(_folder(tmp_path / "c", X, multi))
    assert c.multilabel and len(c.classes) == 7
    d = load_dataset(f"ehr:{tmp_path / 'c'},0:4")  # DiagnoseNET's target_start:target_end
    assert not d.multilabel and (d.y == onehot).all()
    split = stratified_split(c, val=0.25, seed=1)
    assert not set(split.train) & set(split.val) and len(split.train) + len(split.val) == 40


@pytest.mark.parametrize("case, file", [
    ("missing_x", "X.npy"), ("missing_y", "Y.npy"), ("corrupt_x", "X.npy"), ("corrupt_npz", "X.npz"),
    ("mismatch", "Y.npy"), ("not_binary", "Y.npy"), ("nan", "X.npy"), ("class_names", "classes.txt")])
def test_bad_ehr_folders_are_one_line_exit_2(tmp_path, capsys, case, file):
    X = np.zeros((10, 5), np.float32)
    X[:, 0] = 1
    Y = np.arange(10) % 2
    folder = tmp_path / "d"
    folder.mkdir()
    if case != "missing_x":
        np.save(folder / "X.npy", X)
    if case != "missing_y":
        np.save(folder / "Y.npy", Y)
    if case == "corrupt_x":
        (folder / "X.npy").write_bytes(b"\x93NUMPY garbage")
    elif case == "corrupt_npz":
        (folder / "X.npz").write_bytes(b"PK not a zip")
    elif case == "mismatch":
        np.save(folder / "Y.npy", Y[:7])
    elif case == "not_binary":
        np.save(folder / "Y.npy", np.full((10, 3), 2))
    elif case == "nan":
        X[3, 2] = np.nan
        np.save(folder / "X.npy", X)
    elif case == "class_names":
        np.save(folder / "Y.npy", np.eye(2, dtype=np.int8)[Y])  # two target columns, three names
        (folder / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError) as err:
        load_ehr(folder)
    assert err.value.where.endswith(file)
    assert main(["data", "summary", f"ehr:{folder}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and file in lines[0]


def test_synthetic_shape_shares_and_groups():
    ds = synthetic_ehr(SyntheticEHRConfig(n_patients=2000, n_features=1000))
    assert ds.synthetic and ds.source.startswith("synthetic-ehr") and all(c.startswith("syn-") for c in ds.classes)
    assert ds.X.shape == (2000, 1000) and set(np.unique(ds.X.data)) == {1.0}
    counts = ds.y.sum(axis=0)
    assert np.allclose(counts / 2000, np.asarray(CLASS_SHARES) / sum(CLASS_SHARES), atol=2e-3)
    assert [g for g, _, _ in feature_layout(14637)] == [
        "demographics", "admission", "hospitalization", "physical_dependence", "cognitive_dependence",
        "rehabilitation_time", "comorbidities", "morbidity", "etiology"]
    assert feature_layout(14637)[-1][2] == 14637 and class_counts(28).min() == 2
    again = synthetic_ehr(SyntheticEHRConfig(n_patients=2000, n_features=1000))
    assert (again.X != ds.X).nnz == 0  # seeded


def test_synthetic_ehr_is_learnable(tmp_path):
    """A short from-scratch MLP run beats the majority-class baseline by a wide margin."""
    from n2nas.grid.cells import GridConfig, diagnosenet_cell
    from search_spaces import get_space

    ds = load_dataset("synthetic-ehr:3000,600")
    space = get_space("ehr-mlp-small")
    sample = {**space.space.default_sample(), "units": 64, "layers": 2, "batch_size": 768, "lr": 0.005}
    result = diagnosenet_cell(space, sample, ds, tmp_path, GridConfig(epochs=12, patience=12, val_fraction=0.1,
                                                                      device="cpu", protocol="diagnosenet"),
                              log=lambda m: None)
    majority = max(CLASS_SHARES) / sum(CLASS_SHARES)
    assert result["status"] == "ok"
    assert result["metrics"]["accuracy"] > majority + 0.25
    assert result["metrics"]["macro_f1"] > 0.3


def test_sparse_batches_never_densify_the_matrix():
    """100k x 14637 patients at DiagnoseNET's sparsity: a few training steps stay far below the dense size."""
    from search_spaces import get_space

    ds = load_dataset("synthetic-ehr:100000")
    dense_bytes = ds.X.shape[0] * ds.X.shape[1] * 4
    space = get_space("ehr-mlp")
    model = space.build_child({**space.space.default_sample(), "units": 16, "layers": 2}, ds.n_features, 14)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    targets = torch.from_numpy(ds.y.argmax(1))
    rng = np.random.default_rng(0)
    tracemalloc.start()
    for _ in range(3):
        idx = rng.choice(len(ds), 768, replace=False)
        x = ds.sparse_rows(idx)
        assert x.is_sparse and x.shape == (768, 14637)
        loss = torch.nn.functional.cross_entropy(model(x), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert ds.rows(idx[:64]).shape == (64, 14637)  # the dense path densifies only the asked rows
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < dense_bytes / 50, (peak, dense_bytes)
    assert ds.X.nnz < ds.X.shape[0] * ds.X.shape[1] * 0.01


def test_class_weight_moves_probability_to_the_rare_classes():
    """``class_weight`` weights the loss by balanced class weights to that power: trained the same way otherwise,
    the more weighted model gives the rare training classes (< 15 of 500 rows) more probability."""
    from n2nas.models.folder import data_card
    from n2nas.models.retrain import RetrainConfig, fit_rows
    from n2nas.space import Pipeline
    from n2nas.train.rows import predict_rows
    from search_spaces import get_space

    ds = load_dataset("synthetic-ehr:600,300")
    space = get_space("ehr-mlp-small")
    sample = {**space.space.default_sample(), "units": 16, "layers": 2, "lr": 0.01}  # one batch of 768 an epoch
    pipeline = Pipeline("ehr-mlp-small", sample, data_card(ds))
    idx = np.arange(len(ds))
    rare = np.bincount(ds.label_indices()[:500], minlength=len(ds.classes)) < 15

    def rare_share(power):
        fitted = fit_rows(pipeline, ds, idx[:500], idx[500:], RetrainConfig(epochs=20, patience=20,
                                                                           class_weight=power),
                          "macro_f1", torch.device("cpu"))
        return predict_rows(fitted.model, ds, idx[:500], False, torch.device("cpu"))[:, rare].sum(axis=1).mean()

    assert rare_share(1.0) > rare_share(0.5) > rare_share(0.0) + 0.02
