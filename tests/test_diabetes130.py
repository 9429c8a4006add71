"""Clinical tables: the diabetes130 / table readers, their encoder (fitted on training rows, JSON, unseen -> other),
patient-grouped splits, the cache, bad tables (one line, exit 2), and retrain + evaluate through encoder.json."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from n2nas.cli import main
from n2nas.data import table as table_mod
from n2nas.data.spec import load_dataset
from n2nas.data.splits import stratified_split
from n2nas.data.table import CHAPTERS, COUNTS, DRUGS, fit_on_training, icd9_chapter, reencode
from n2nas.errors import DataError

HEADER = ["encounter_id", "patient_nbr", "race", "gender", "age", "weight", "admission_type_id",
          "discharge_disposition_id", "admission_source_id", "time_in_hospital", "payer_code", "medical_specialty",
          "num_lab_procedures", "num_procedures", "num_medications", "number_outpatient", "number_emergency",
          "number_inpatient", "diag_1", "diag_2", "diag_3", "number_diagnoses", "max_glu_serum", "A1Cresult",
          *DRUGS, "change", "diabetesMed", "readmitted"]
DIAG_1 = ("428", "414", "250.83", "486", "V57", "786", "996", "038", "?")
OTHER_CODES = ("276", "250", "401", "427", "599", "V45", "E885", "?")


def write_table(folder, n_patients=40, seed=0, edit=None):
    """A tiny diabetic_data.csv with the real columns: 1-3 encounters per patient, seeded values."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(n_patients):
        for _ in range(int(rng.integers(1, 4))):
            row = {c: "No" for c in DRUGS}
            row.update({
                "encounter_id": str(1000 + len(rows)), "patient_nbr": str(50000 + p),
                "race": str(rng.choice(["Caucasian", "AfricanAmerican", "?"])),
                "gender": str(rng.choice(["Female", "Male"])),
                "age": str(rng.choice(["[50-60)", "[60-70)", "[70-80)"])), "weight": "?",
                "admission_type_id": str(rng.integers(1, 4)), "discharge_disposition_id": str(rng.integers(1, 4)),
                "admission_source_id": str(rng.choice([1, 7])), "payer_code": str(rng.choice(["MC", "?"])),
                "medical_specialty": str(rng.choice(["InternalMedicine", "?"])),
                "diag_1": str(DIAG_1[len(rows) % len(DIAG_1)]),
                "diag_2": str(rng.choice(OTHER_CODES)), "diag_3": str(rng.choice(OTHER_CODES)),
                "max_glu_serum": "None", "A1Cresult": str(rng.choice(["None", ">8"])),
                "insulin": str(rng.choice(["No", "Steady", "Up", "Down"])), "change": str(rng.choice(["No", "Ch"])),
                "diabetesMed": "Yes", "readmitted": str(rng.choice(["NO", ">30", "<30"]))})
            row.update({c: str(rng.integers(0, 20)) for c in COUNTS})
            rows.append(row)
    if edit:
        edit(rows)
    with open(folder / "diabetic_data.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for row in rows:
            w.writerow([row[c] for c in HEADER] if isinstance(row, dict) else row)
    return folder


def test_chapter_target_drops_diag_1_and_missing_targets(tmp_path):
    ds = load_dataset(f"diabetes130:{write_table(tmp_path / 'd')}")
    assert ds.classes == CHAPTERS and len(CHAPTERS) == 17 and not ds.multilabel
    assert ds.skipped and "rows without a target" in ds.skipped[0]["reason"]
    names = ds.encoder["feature_names"]
    assert ds.X.shape == (len(ds), len(names)) and ds.X.format == "csr"
    assert not any(n.startswith("diag_1") for n in names) and "diag_2=?" in names
    # codes that appear only in diag_1 are never features: 428/414/486/786/996/038 are diag_1-only here
    assert not {"icd9:428", "icd9:414", "icd9:486"} & set(names)
    assert icd9_chapter("250.83") == "endocrine" and icd9_chapter("V57") == "supplementary"
    assert icd9_chapter("E885") == "supplementary" and icd9_chapter("996") == "injury" and icd9_chapter("?") is None
    assert ds.label_matrix().sum(axis=1).tolist() == [1] * len(ds)
    readmit = load_dataset(f"diabetes130:{tmp_path / 'd'},readmitted30")
    assert readmit.classes == ("rest", "<30") and any(n.startswith("diag_1=") for n in readmit.encoder["feature_names"])


def test_split_is_by_patient(tmp_path):
    ds = load_dataset(f"diabetes130:{write_table(tmp_path / 'd', n_patients=120)},readmitted")
    index = {rid: i for i, rid in enumerate(ds.ids)}
    assert len(np.unique(ds.groups)) < len(ds)  # patients really repeat
    for seed in (0, 1):
        split = stratified_split(ds, val=0.2, test=0.2, seed=seed)
        parts = [set(ds.groups[[index[i] for i in part]]) for part in (split.train, split.val, split.test)]
        assert all(parts) and not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert sum(map(len, (split.train, split.val, split.test))) == len(ds)


def test_encoder_sees_training_rows_only_and_round_trips_as_json(tmp_path):
    def rare(rows):  # one patient's encounters carry a race and a code nobody else has
        for row in rows:
            if row["patient_nbr"] == "50003":
                row["race"], row["diag_2"] = "Martian", "123"

    ds = load_dataset(f"diabetes130:{write_table(tmp_path / 'd', n_patients=80, edit=rare)},readmitted")
    inside = np.flatnonzero(ds.groups != "50003")
    fitted = fit_on_training(ds, inside)
    enc = json.loads(json.dumps(fitted.encoder))  # plain JSON, no pickles
    assert "Martian" not in enc["categorical"]["race"] and "123" not in enc["codes"]
    counts = np.array([float(v) for v in _column(tmp_path / "d", "num_medications")])
    kept = counts[np.isin(np.arange(len(counts)), inside)]  # no row was skipped for this target
    assert enc["numeric"]["num_medications"][0] == pytest.approx(kept.mean())
    # the held-out patient's unseen race and code land in "other", never an error
    names = enc["feature_names"]
    row = fitted.X[int(np.flatnonzero(ds.groups == "50003")[0])]
    on = {names[j] for j in row.indices[row.data == 1]}
    assert {"race=other", "icd9:other"} <= on
    # the same encoder on a new table with new categories gives the same columns
    new = load_dataset(f"diabetes130:{write_table(tmp_path / 'n', n_patients=10, seed=7, edit=_martians)},readmitted")
    again = reencode(new, enc)
    assert again.X.shape[1] == fitted.X.shape[1] and again.classes == fitted.classes
    col = names.index("race=other")
    assert again.X[:, col].toarray().ravel().tolist() == [1.0] * len(again)


def _martians(rows):
    for row in rows:
        row["race"], row["medical_specialty"] = "Martian", "Xenology"


def _column(folder, name):
    with open(folder / "diabetic_data.csv", newline="") as fh:
        return [r[name] for r in csv.DictReader(fh)]


def test_warm_read_comes_from_the_cache(tmp_path, monkeypatch):
    folder = write_table(tmp_path / "d")
    cold = load_dataset(f"diabetes130:{folder}")
    fitted = fit_on_training(cold, np.arange(0, len(cold), 2))
    monkeypatch.setattr(table_mod, "read_csv", lambda *_a: pytest.fail("a warm read parsed the CSV"))
    warm = load_dataset(f"diabetes130:{folder}")
    assert (warm.X != cold.X).nnz == 0 and (warm.y == cold.y).all() and (warm.groups == cold.groups).all()
    assert (fit_on_training(warm, np.arange(0, len(cold), 2)).X != fitted.X).nnz == 0


@pytest.mark.parametrize("case, where", [
    ("no_target", "line 1: no target column 'readmitted'"),
    ("bad_count", "line 5, column 'num_lab_procedures': 'many' is not a number"),
    ("ragged", "line 4: 3 fields but the header has"),
    ("bad_target", "line 3, column 'readmitted': unknown target 'soon'")])
def test_malformed_tables_are_one_line_exit_2(tmp_path, capsys, case, where):
    def edit(rows):
        if case == "no_target":
            for row in rows:
                row["readmitted"] = None
        elif case == "bad_count":
            rows[3]["num_lab_procedures"] = "many"
        elif case == "ragged":
            rows[2] = ["1", "2", "3"]
        elif case == "bad_target":
            rows[1]["readmitted"] = "soon"

    folder = write_table(tmp_path / "d", edit=edit)
    if case == "no_target":  # drop the column itself
        path = folder / "diabetic_data.csv"
        lines = [ln.rsplit(",", 1)[0] for ln in path.read_text().splitlines()]
        path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError):
        load_dataset(f"diabetes130:{folder},readmitted")
    assert main(["data", "summary", f"diabetes130:{folder},readmitted"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "diabetic_data.csv" in lines[0] and where in lines[0]


def test_general_table_spec(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("pid,age,ward,dx,outcome\n" + "".join(
        f"{i // 2},{30 + i % 7},{'ab'[i % 2]},{['401', '250.1', '?'][i % 3]},{'yn'[i % 3 == 0]}\n" for i in range(40)))
    ds = load_dataset(f"table:{path},target=outcome,id=pid,codes=dx")
    assert ds.classes == ("n", "y") and len(np.unique(ds.groups)) == 20
    assert "age" in ds.encoder["numeric"] and "ward" in ds.encoder["categorical"]
    assert "icd9:401" in ds.encoder["feature_names"] and "dx=?" in ds.encoder["feature_names"]
    with pytest.raises(DataError, match="no target column 'nope'"):
        load_dataset(f"table:{path},target=nope")
    with pytest.raises(DataError, match="takes target=COL"):
        load_dataset(f"table:{path},target=outcome,colour=red")


def test_retrain_and_evaluate_encode_new_encounters_with_the_model_encoder(tmp_path, capsys):
    folder = write_table(tmp_path / "d", n_patients=150)
    pipe = tmp_path / "pipe.json"
    pipe.write_text(json.dumps({"space": "ehr-mlp-small", "sample": {
        "layers": 2, "units": 16, "activation": "relu", "dropout": 0.0, "lr": 0.005, "batch_size": 768,
        "workers": 4}, "scores": {"metric_name": "macro_auroc"}}))
    model = tmp_path / "model"
    assert main(["retrain", str(pipe), "--data", f"diabetes130:{folder},readmitted", "--epochs", "2",
                 "--class-weight", "0.5", "--out", str(model), "--quiet"]) == 0
    assert json.loads((model / "metrics.json").read_text())["metric"] == "macro_auroc"  # the search's reward
    encoder = json.loads((model / "encoder.json").read_text())
    assert encoder["fitted_on"] == "training rows"
    split = json.loads((model / "split.json").read_text())
    ds = load_dataset(f"diabetes130:{folder},readmitted")
    index = {rid: i for i, rid in enumerate(ds.ids)}
    train_rows = [index[i] for i in split["train"]]
    assert encoder["n_fit_rows"] == len(train_rows)
    assert not set(ds.groups[train_rows]) & set(ds.groups[[index[i] for i in split["val"]]])
    capsys.readouterr()
    new = write_table(tmp_path / "n", n_patients=12, seed=3, edit=_martians)
    assert main(["evaluate", str(model), "--data", f"diabetes130:{new},readmitted"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n_records"] == len(load_dataset(f"diabetes130:{new},readmitted"))
    assert 0.0 <= scores["accuracy"] <= 1.0 and set(scores["f1"]) == {"NO", ">30", "<30"}
    # export: the network takes encoded rows; the encoder travels in the JSON beside it
    out = tmp_path / "model.ts"
    assert main(["export", str(model), "--format", "torchscript", "--out", str(out)]) == 0
    side = json.loads((tmp_path / "model.ts.preprocessing.json").read_text())
    assert side["encoder"] == encoder and side["n_inputs"] == len(encoder["feature_names"])


def test_search_splits_by_patient_and_fits_the_encoder_on_its_training_rows(tmp_path):
    from dataclasses import replace

    from n2nas.searching.finals import FinalsConfig
    from n2nas.searching.loop import SearchConfig, search

    folder = write_table(tmp_path / "d", n_patients=120)
    config = replace(SearchConfig.ehr_cpu(), budget_epochs=2, budget_minutes=None, shared_steps=2,
                     controller_steps=1, children_per_step=2, derive_children=2, top_k=1, device="cpu",
                     finals=FinalsConfig(children=0))
    spec = f"diabetes130:{folder},readmitted"
    result = search(spec, config, out=tmp_path / "run")
    assert result.trials and all(t["sample"]["lr"] == 0.001 for t in result.trials)  # pinned, not searched
    ds = load_dataset(spec)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    index = {rid: i for i, rid in enumerate(ds.ids)}
    train = [index[i] for i in split["train"]]
    assert not set(ds.groups[train]) & set(ds.groups[[index[i] for i in split["val"]]])
    width = fit_on_training(ds, np.array(train)).n_features
    assert json.loads((tmp_path / "run" / "best_pipeline.json").read_text())["data"]["n_inputs"] == width
