"""The ehr-mlp space (Table 4 parameter counts, weight sharing), grids (planning, CLI, files) and an ENAS search."""
from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch

import n2nas
from n2nas.cli import main
from n2nas.errors import ConfigError
from n2nas.grid.cells import get_preset, parse_grid, plan_cells
from search_spaces import get_space
from search_spaces.ehr_mlp_model import mlp_params

# DiagnoseNET Table 4 (14637 inputs, 14 classes), millions of parameters per hidden layers x units.
TABLE4 = {(2, 128): 1.89, (16, 512): 11.44, (2, 4096): 76.80, (4, 1024): 18.15, (8, 256): 4.21, (16, 16): 0.24}


@pytest.mark.parametrize("cell", sorted(TABLE4))
def test_parameter_counts_equal_table4(cell):
    layers, units = cell
    assert round(mlp_params(14637, units, layers, 14) / 1e6, 2) == TABLE4[cell]
    space = get_space("ehr-mlp")
    rows = {(r["layers"], r["units"]): r["params"] for r in space.param_table(14637, 14)}
    assert rows[cell] == mlp_params(14637, units, layers, 14)
    with torch.device("meta"):  # the real module, without allocating 300 MB
        child = space.build_child({**space.space.default_sample(), "layers": layers, "units": units}, 14637, 14)
    assert sum(p.numel() for p in child.parameters()) == rows[cell]


def test_space_params_command(capsys):
    assert main(["space", "params", "ehr-mlp", "--input", "14637", "--output", "14"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[1:] == ["16", "32", "64", "128", "256", "512", "1024", "2048", "4096"]
    two, sixteen = out[2].split(), out[5].split()
    assert two[0] == "2" and two[4] == "1.89" and two[-1] == "76.80"
    assert sixteen[0] == "16" and sixteen[6] == "11.44"
    assert main(["space", "params", "ecg", "--input", "1", "--output", "4"]) == 2


def test_supernet_slice_equals_standalone_child():
    space = get_space("ehr-mlp-small")
    supernet = space.build_supernet(50, 5).eval()
    sample = {**space.space.default_sample(), "units": 32, "layers": 4, "activation": "tanh"}
    child = space.build_child(sample, 50, 5).eval()
    space.copy_shared_weights(supernet, child, sample)
    x = (torch.rand(7, 50) < 0.2).float()
    assert torch.allclose(child(x), supernet(x, sample), atol=1e-6)
    assert torch.allclose(child(x.to_sparse()), child(x), atol=1e-5)  # sparse rows give the same outputs


def test_grid_parsing_and_planning():
    assert parse_grid(["lr=[0.01,0.001]", "batch_size=16,32"]) == [("lr", (0.01, 0.001)), ("batch_size", (16, 32))]
    with pytest.raises(ConfigError):
        parse_grid(["lr"])
    ecg = get_space("ecg-hannun")
    from search_spaces.references import hannun_sample

    preset = get_preset("residual-lr-batch", "ecg")
    cells = plan_cells(ecg, list(preset.axes), hannun_sample(ecg))
    assert [(c["lr"], c["batch_size"]) for c in cells] == [(0.01, 16), (0.01, 32), (0.01, 64), (0.001, 16),
                                                          (0.001, 32), (0.001, 64)]
    assert all(c["layer3/skip"] == hannun_sample(ecg)["layer3/skip"] for c in cells)
    with pytest.raises(ConfigError):
        plan_cells(get_space("ehr-mlp"), [("units", (100,))], {})  # not an option of the space
    with pytest.raises(ConfigError):
        get_preset("diagnosenet", "ecg")


def test_grid_command_writes_table_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["grid", "--space", "ehr-mlp", "--preset", "diagnosenet", "--data", "synthetic-ehr:400,300",
            "--grid", "units=[16,32]", "--grid", "layers=[2]", "--epochs", "2", "--device", "cpu",
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "macro_f1" in printed and "weighted_f1" in printed and "energy_J" in printed
    for name in ("grid.csv", "grid.png", "grid.txt", "grid.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "grid.csv")))
    assert [(r["layers"], r["units"]) for r in rows] == [("2", "16"), ("2", "32")]
    assert all(int(r["params"]) == mlp_params(300, int(r["units"]), 2, 14) for r in rows)
    assert all(r["energy_source"] for r in rows) and all(r["status"] == "ok" for r in rows)
    first = json.loads((out / "cells" / "000" / "result.json").read_text())
    assert first["sample"]["lr"] == 0.001 and first["result"]["epochs_run"] <= 2
    # the same grid again reuses finished cells (no retraining: identical rows)
    assert main(argv) == 0
    assert list(csv.DictReader(open(out / "grid.csv"))) == rows


def test_enas_search_over_ehr_mlp_finishes(tmp_path):
    from n2nas.searching.loop import SearchConfig

    from n2nas.searching.finals import FinalsConfig

    # finals of 10 steps a rung (the default's 90-step minimum made this test 720 finals steps, past its timeout on
    # a loaded machine): the wiring is under test here, not the finals' length
    config = replace(SearchConfig(), space="ehr-mlp-small", budget_epochs=3, budget_minutes=None, shared_steps=3,
                     controller_steps=1, children_per_step=3, reward_records=40, derive_children=3, top_k=2,
                     device="cpu", finals=FinalsConfig(passes=0.5, min_steps=10, vary="dropout"))
    result = n2nas.search("synthetic-ehr:400,300", config, out=tmp_path / "run")
    # one warm-up epoch (one child scored), two controller epochs of 3 children, 3 derived, then the finals: the
    # 3 derived children, the default MLP (unless it was one of them) and the best derived child with dropout 0
    # and 0.5 (the search pins it to 0.2; vary="dropout") trained from scratch, the best two of them trained on and
    # scored again (no preprocessing tokens, so no screen)
    phases = [t["phase"] for t in result.trials]
    assert phases[:10] == ["warmup"] + ["controller"] * 6 + ["derive"] * 3
    assert phases[10:] in (["final"] * 7, ["final"] * 8)
    assert all(t["sample"]["dropout"] == 0.2 for t in result.trials if t["phase"] != "final")
    best_derived = max((t for t in result.trials if t["phase"] == "derive"), key=lambda t: (t["reward"], -t["step"]))
    variants = [t["sample"] for t in result.trials if t["phase"] == "final" and t["sample"]["dropout"] != 0.2]
    assert {s["dropout"] for s in variants} == {0.0, 0.5}
    assert all({**s, "dropout": 0.2} == best_derived["sample"] for s in variants)
    assert all(t["flops"] > 0 for t in result.trials)
    best = n2nas.load_pipeline(tmp_path / "run" / "best_pipeline.json")
    model = n2nas.build_model(best)
    assert sum(p.numel() for p in model.parameters()) == result.best(1)[0].scores["params"]


def test_grid_cells_take_the_given_validation_share_and_keep_test_probabilities(tmp_path):
    """``GridConfig.val_fraction`` sets a DiagnoseNET cell's validation rows (a benchmark's split); each cell saves
    its test rows' probabilities, in the order of the trainer's test indices."""
    import numpy as np

    from n2nas.data.spec import load_dataset
    from n2nas.grid.cells import TEST_PROBS, GridConfig, run_grid
    from n2nas.train.rows import split_indices

    ds = load_dataset("synthetic-ehr:400,300")
    grid = run_grid("ehr-mlp-small", [("units", (16,))], ds, tmp_path / "grid",
                    GridConfig(epochs=1, seed=0, device="cpu", val_fraction=0.3, protocol="diagnosenet"),
                    {"layers": 2, "lr": 0.001, "activation": "relu", "dropout": 0.2, "batch_size": 768})
    result = json.loads((tmp_path / "grid" / "cells" / "000" / "result.json").read_text())["result"]
    _, val_idx, test_idx = split_indices(ds, 0.3, 0.15, 0)
    assert result["n_val"] == len(val_idx) and grid.rows[0]["status"] == "ok"
    probs = np.load(tmp_path / "grid" / "cells" / "000" / TEST_PROBS)
    assert probs.shape == (len(test_idx), len(ds.classes)) and np.allclose(probs.sum(1), 1, atol=1e-5)
