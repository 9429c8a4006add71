"""12-lead, multi-label ECG: label files, header folds, lead sets, whole-set macro AUROC reward, kept thresholds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from n2nas.data.readers import load_wfdb_csv
from n2nas.data.splits import split_by_header
from n2nas.data.synthetic import synth_rhythm, write_wfdb_record
from n2nas.errors import ConfigError, DataError
from n2nas.metrics import choose_thresholds, evaluate_predictions, reward_metric, reward_metric_name
from n2nas.space import Pipeline
from search_spaces import get_space
from search_spaces.leads import LEAD_SETS, STANDARD_LEADS

# label rows: rhythm kind of the waveform -> its labels (a PTB-XL-like multi-label file)
KINDS = {"N": "NORM", "A": "AF;STTC", "O": "CD"}


def write_12lead(folder, n: int = 18, leads=STANDARD_LEADS, header: str | None = "record,labels",
                 fs: float = 100.0, seconds: float = 10.0):
    """``n`` synthetic 12-lead WFDB records (``# fold: train`` or, every third one, ``# fold: val``) and their
    ``labels.csv``; returns the label file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [] if header is None else [header]
    rng = np.random.default_rng(0)
    for i in range(n):
        kind = "NAO"[i % 3]
        signal = synth_rhythm(kind, seconds, fs, rng, leads=12)
        keep = [STANDARD_LEADS.index(name) for name in leads]
        fold = "val" if i % 3 == 0 and i >= 3 else "train"
        write_wfdb_record(folder, f"r{i:03d}", signal[keep], fs, tuple(leads), comments=[f"fold: {fold}"])
        rows.append(f"r{i:03d},{KINDS[kind]}")
    path = folder / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def twelve(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ptbxl_like")
    return folder, write_12lead(folder)


def test_a_header_row_is_read_as_a_header_and_labels_split_on_semicolons(twelve):
    folder, labels = twelve
    ds = load_wfdb_csv(folder, labels)
    assert len(ds) == 18 and "record" not in ds.ids and ds.multilabel
    assert ds.classes == ("AF", "CD", "NORM", "STTC")
    assert ds.label_matrix().sum(0).tolist() == [6, 6, 6, 6]
    assert ds.records[0].meta["header"]["fold"] == "train" and not ds.skipped


def test_label_file_problems_are_one_line_errors_never_silent(twelve, tmp_path):
    folder, labels = twelve
    missing = tmp_path / "missing.csv"
    missing.write_text("record,label\nr000,NORM\nnope,NORM\n")
    with pytest.raises(DataError, match="nope"):
        load_wfdb_csv(folder, missing)
    partial = tmp_path / "partial.csv"  # r001..r017 exist on disk but have no row: listed, not dropped silently
    partial.write_text("r000,NORM\n")
    ds = load_wfdb_csv(folder, partial)
    assert ds.ids == ["r000"] and len(ds.skipped) == 17 and "no row for record r001" in ds.skipped[0].reason
    extra = tmp_path / "extra.csv"  # an unseen class is read as one more class, with exactly its record
    extra.write_text(labels.read_text().replace("r001,AF;STTC", "r001,AF;XYZ"))
    ds = load_wfdb_csv(folder, extra)
    assert "XYZ" in ds.classes and ds.label_matrix()[:, ds.classes.index("XYZ")].tolist() == [0, 1] + [0] * 16


def test_split_by_header_fold(twelve):
    folder, labels = twelve
    rest, test = split_by_header(load_wfdb_csv(folder, labels), "val")
    assert test.ids == ["r003", "r006", "r009", "r012", "r015"] and len(rest) == 13
    assert not set(rest.ids) & set(test.ids)
    with pytest.raises(DataError, match="selects 0 of"):
        split_by_header(load_wfdb_csv(folder, labels), "fold10")


def test_macro_auroc_is_the_multilabel_reward_over_the_whole_set():
    assert reward_metric_name("auto", ("CD", "HYP", "MI", "NORM", "STTC"), True) == "macro_auroc"
    assert reward_metric_name("auto", ("164889003", "426783006"), True) == "challenge_score"
    assert reward_metric_name("auto", ("N", "A", "O", "~"), False) == "cinc2017_f1"
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (200, 3))
    probs = np.clip(y * 0.3 + rng.random((200, 3)) * 0.7, 0, 1)
    expected = np.mean([roc_auc_score(y[:, c], probs[:, c]) for c in range(3)])
    assert reward_metric("macro_auroc", probs, y, list("abc"), True) == pytest.approx(expected)
    for name in ("macro_auprc", "auroc", "AUC"):
        with pytest.raises(ConfigError, match="too noisy"):
            reward_metric(name, probs, y, list("abc"), True)


def test_thresholds_maximise_each_class_f1_and_evaluate_reports_them():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (300, 2))
    probs = np.clip(0.25 * y + 0.6 * rng.random((300, 2)), 0, 1)  # every score below 0.85: 0.5 is a poor cut
    t = choose_thresholds(y, probs)
    for c in range(2):
        best = max(f1_score(y[:, c], probs[:, c] >= g) for g in np.arange(1, 100) / 100)
        assert f1_score(y[:, c], probs[:, c] >= t[c]) == pytest.approx(best)
    out = evaluate_predictions(probs, y, ["a", "b"], True, threshold=t)
    assert out["thresholds"] == {"a": t[0], "b": t[1]}
    assert out["f1"]["a"] == pytest.approx(f1_score(y[:, 0], probs[:, 0] >= t[0]))
    assert out["macro_f1"] > evaluate_predictions(probs, y, ["a", "b"], True)["macro_f1"]


@pytest.mark.parametrize("leads", sorted(LEAD_SETS))
def test_a_lead_set_child_equals_the_supernet_and_reads_only_its_leads(leads):
    space = get_space("ecg-12lead")
    sample = dict(space.space.default_sample(), leads=leads)
    supernet = space.build_supernet(12, 4).eval()
    child = space.build_child(sample, 12, 4).eval()
    space.copy_shared_weights(supernet, child, sample)
    x = torch.randn(2, 12, 500)
    assert torch.allclose(supernet(x, sample), child(x), atol=1e-5)
    unused = [i for i, name in enumerate(STANDARD_LEADS) if name not in LEAD_SETS[leads]]
    y = x.clone()
    y[:, unused] = 100.0  # leads outside the set cannot change the output
    assert torch.allclose(child(y), child(x), atol=1e-5)


def test_fewer_leads_cost_fewer_flops_and_other_spaces_have_no_lead_token():
    from n2nas.measure.cost import pipeline_cost

    space = get_space("ecg-12lead")
    flops = [pipeline_cost(Pipeline(space.name, dict(space.space.default_sample(), leads=k),
                                    {"n_leads": 12, "classes": list("abcd")}), 10.0)["flops_per_record"]
             for k in (12, 6, 3, 2, 1)]
    assert flops == sorted(flops, reverse=True) and flops[0] > flops[-1]
    for name in ("ecg", "ecg-small", "ecg-cpu", "ecg-hannun"):
        assert "leads" not in {d.label for d in get_space(name).space.flat}
    with pytest.raises(ConfigError, match="12 standard leads"):
        space.build_supernet(1, 4)(torch.randn(1, 1, 500), space.space.default_sample())


def test_records_without_the_leads_a_pipeline_needs_fail_by_name(tmp_path):
    labels = write_12lead(tmp_path / "limb", n=6, leads=LEAD_SETS[6])
    ds = load_wfdb_csv(tmp_path / "limb", labels)
    space = get_space("ecg-12lead")
    with pytest.raises(DataError, match=r"r000.*6 lead\(s\).*12 standard leads"):
        space.make_context(ds, np.arange(4), np.arange(4, 6))


def test_references_retrain_keep_thresholds_and_evaluate_prints_them(twelve, tmp_path):
    from n2nas.models.export import preprocessing_spec
    from n2nas.models.retrain import RetrainConfig, retrain
    from n2nas.models.evaluate import evaluate
    from search_spaces.references import fixed_pipelines

    folder, labels = twelve
    ds = load_wfdb_csv(folder, labels)
    pipes = fixed_pipelines()
    assert {"plain-cnn-12", "resnet-12"} <= set(pipes)
    pipe = Pipeline.from_json(pipes["resnet-12"], get_space(pipes["resnet-12"]["space"]).space)
    out = tmp_path / "model"
    summary = retrain(Pipeline(pipe.space, pipe.sample), ds, out, RetrainConfig(epochs=2, val_fraction=0.34),
                      log=lambda m: None)
    assert summary["metric"] == "macro_auroc"
    kept = json.loads((out / "thresholds.json").read_text())
    assert kept["classes"] == list(ds.classes) and len(kept["thresholds"]) == 4
    scores = evaluate(out, ds)
    assert set(scores["per_class_auroc"]) == set(ds.classes)
    assert list(scores["thresholds"].values()) == pytest.approx(kept["thresholds"])
    spec = preprocessing_spec(out, pipe)
    assert spec["thresholds"] == pytest.approx(dict(zip(kept["classes"], kept["thresholds"])))
    extra = tmp_path / "extra.csv"  # a class the model never saw: one line, not a silently shifted column
    extra.write_text(labels.read_text().replace("r001,AF;STTC", "r001,AF;XYZ"))
    with pytest.raises(DataError, match="differ from the model's"):
        evaluate(out, load_wfdb_csv(folder, extra))
    one = write_12lead(tmp_path / "one", n=6, leads=("II",))
    with pytest.raises(DataError, match=r"1 lead\(s\).*takes 12"):
        evaluate(out, load_wfdb_csv(tmp_path / "one", one))


def test_the_residual_12lead_space_defaults_to_resnet_12s_network_and_still_searches_it():
    from search_spaces.references import fixed_pipelines

    space = get_space("ecg-12lead-resnet").space
    default, resnet = space.default_sample(), fixed_pipelines()["resnet-12"]["sample"]
    layers = [k for k in resnet if k.startswith("layer")]
    assert {k: tuple(default[k]) if k.endswith("skip") else default[k] for k in layers} == \
        {k: tuple(resnet[k]) if k.endswith("skip") else resnet[k] for k in layers}
    assert "layer3/skip" in {t.label for t in space.tokens}  # a default, not a pin
    assert space.pinned({"fs": 50}).default_sample()["layer3/skip"] == (0, 1, 0)
    assert get_space("ecg-12lead").space.default_sample()["layer3/skip"] == (0, 0, 0)


def test_12lead_searches_pin_strong_augmentation_and_the_references_keep_none():
    from search_spaces.ecg import ECGSpaceConfig
    from search_spaces.references import fixed_pipelines

    from n2nas.searching.loop import SearchConfig
    from n2nas.searching.preparation import pins

    space_def = get_space("ecg-12lead")
    assert pins(space_def, SearchConfig.twelve_lead())["augment"] == "strong"
    assert pins(space_def, SearchConfig(fixed={"augment": "none"}))["augment"] == "none"  # --fix still wins
    assert {fixed_pipelines()[r]["sample"]["augment"] for r in ("plain-cnn-12", "resnet-12")} == {"none"}
    assert get_space("ecg-cpu").space.default_sample()["augment"] == "none"  # single-lead spaces as before
    with pytest.raises(ConfigError, match="default_augment"):
        ECGSpaceConfig(default_augment="heavy")


def test_the_progress_line_names_the_metric():
    from n2nas.searching.progress import ProgressState, format_status

    line = format_status(ProgressState(phase="warm-up", best_metric=0.812, metric_name="macro_auroc"), 60.0)
    assert "best macro_auroc 0.812" in line


def test_the_benchmark_compares_with_the_better_hand_reference(capsys):
    from n2nas.metrics import macro_auroc, macro_auroc_ranks
    from tests.conftest import load_benchmark

    bench, scoring = load_benchmark("ptbxl"), load_benchmark("scoring")
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (120, 3))

    def row(signal):
        probs = np.clip(signal * y + rng.random(y.shape), 0, None)
        return {"pred": probs, "y": y, "test": {"macro_auroc": macro_auroc(y, probs)}}

    done = {(name, 0): row(s) for name, s in (("n2nas search", 0.9), ("plain-cnn-12", 0.2), ("resnet-12", 0.6))}
    tied = np.round(done["resnet-12", 0]["pred"], 1)  # the bootstrap's rank-based AUROC equals scikit-learn's, ties too
    assert macro_auroc_ranks(y, tied) == pytest.approx(macro_auroc(y, tied))
    assert macro_auroc_ranks(y[:, :1] * 0, tied[:, :1]) != macro_auroc_ranks(y[:, :1] * 0, tied[:, :1])  # NaN
    bench.print_gaps(scoring.by_row(done, "macro_auroc"))
    out = capsys.readouterr().out
    assert "minus resnet-12's" in out
    gap = done["n2nas search", 0]["test"]["macro_auroc"] - done["resnet-12", 0]["test"]["macro_auroc"]
    assert f"{gap:+.3f}" in out.splitlines()[1]
    # several retrain seeds: the rows are grouped and compared on their seeds' mean AUROC
    seeded = {(name, seed): row(signal + seed / 10) for seed in (0, 1)
              for name, signal in (("n2nas search", 0.9), ("resnet-12", 0.6))}
    rows = scoring.by_row(seeded, "macro_auroc")
    assert rows["resnet-12"]["preds"][0].shape == (120, 2, 3)
    bench.print_gaps(rows)
    mean_gap = np.mean(rows["n2nas search"]["scores"]) - np.mean(rows["resnet-12"]["scores"])
    assert f"{mean_gap:+.3f}" in capsys.readouterr().out.splitlines()[1]


def test_a_12lead_search_rewards_macro_auroc_over_the_whole_reward_set(tmp_path):
    import n2nas
    from n2nas.searching.finals import FinalsConfig
    from n2nas.searching.loop import SearchConfig
    from n2nas.searching.report import format_by_choice
    from n2nas.searching.screen import ScreenConfig

    labels = write_12lead(tmp_path / "data", n=36, seconds=6.0)
    ds = load_wfdb_csv(tmp_path / "data", labels)
    cfg = SearchConfig(space="ecg-12lead", budget_epochs=1, shared_steps=2, controller_steps=1, children_per_step=2,
                       reward_records=None, derive_children=2, derive_top=1, screen=ScreenConfig.off(),
                       finals=FinalsConfig.off(), data_workers=1, device="cpu")
    result = n2nas.search(ds, cfg, out=tmp_path / "run")
    n_val = len(json.loads((tmp_path / "run" / "split.json").read_text())["val"])
    ok = [t for t in result.trials if t["status"] == "ok"]
    assert ok and {t["records"] for t in ok} == {n_val}  # every child is scored on every validation record at once
    for t in ok:
        assert t["reward_terms"]["metric"] == pytest.approx(t["metrics"]["macro_auroc"])
    assert "best pipeline per leads value" in format_by_choice(result.trials, "leads")


def test_class_weighting_reaches_a_multilabel_loss(twelve, tmp_path):
    """The ``class_weighting`` token weighs each class's positives on multi-label data (BCE ``pos_weight``); it
    once did nothing there, so two seeded retrains that differ only in it must end with different weights."""
    from n2nas.models.retrain import RetrainConfig, retrain
    from search_spaces.references import fixed_pipelines

    folder, labels = twelve
    ds = load_wfdb_csv(folder, labels)
    ref = fixed_pipelines()["plain-cnn-12"]
    space = get_space(ref["space"]).space
    weights = {}
    for flag in (False, True):
        out = tmp_path / f"cw{flag}"
        pipe = Pipeline.from_json({**ref, "sample": {**ref["sample"], "class_weighting": flag}}, space)
        retrain(Pipeline(pipe.space, pipe.sample), ds, out, RetrainConfig(epochs=1, val_fraction=0.34, ema_decay=None),
                log=lambda m: None)
        weights[flag] = torch.load(out / "model.pt", map_location="cpu")
    state = {flag: (w["state_dict"] if "state_dict" in w else w) for flag, w in weights.items()}
    assert any(not torch.equal(a, state[True][k]) for k, a in state[False].items() if a.is_floating_point())
