"""End-of-search summary: the best pipeline in one line, its score and cost, children, time, next command."""
import json

from n2nas.searching.run_summary import build_summary, describe_pipeline, format_summary, load_summary, write_summary


def _sample(ops, dilations=None, skips=None):
    sample = {"fs": 100, "filter": "none", "normalise": "record_z", "window": "crop:30", "augment": "none",
              "width": 1.0}
    for i, op in enumerate(ops):
        sample[f"layer{i}/op"] = op
        sample[f"layer{i}/dilation"] = (dilations or [1] * len(ops))[i]
        sample[f"layer{i}/activation"] = "relu"
        sample[f"layer{i}/skip"] = (skips or [[0] * i for i in range(len(ops))])[i]
    sample.update(lr=0.001, batch_size=32, dropout=0.2, weight_decay=0.0001, class_weighting=True)
    return sample


def _trial(step, status="ok", metric=0.5, reward=0.52, latency=2.5, flops=1_000_000, params=1000):
    return {"step": step, "phase": "derive" if step >= 3 else "controller", "sample": _sample(["conv7"] * 6),
            "metrics": {"cinc2017_f1": metric, "macro_f1": 0.4, "accuracy": 0.7} if status == "ok" else {},
            "flops": flops, "flops_per_record": 2 * flops, "params": params, "latency_ms": latency,
            "status": status, "metric": metric if status == "ok" else None, "metric_name": "cinc2017_f1",
            "reward": reward if status == "ok" else None,
            "reward_terms": {"metric": metric if status == "ok" else None, "flops": 1.04, "energy": 1.0,
                             "latency": 1.0}}


def _best(step, sample, flops=1_000_000):
    return {"space": "ecg-small", "sample": sample, "data": {"classes": ["N", "A", "O", "~"], "n_leads": 1},
            "scores": {"reward": 0.81, "step": step, "phase": "derive", "flops": flops, "params": 313_000,
                       "cinc2017_f1": 0.78}}


def test_describe_pipeline_compresses_layers_into_runs():
    assert describe_pipeline(_sample(["conv7"] * 6)) == \
        "100 Hz, crop:30, no filter, record_z | conv7 x6 (relu) | width 1.0, 0 skips"
    line = describe_pipeline(_sample(["conv7", "sep5", "conv7", "conv7", "maxpool3", "maxpool3"],
                                     dilations=[1, 2, 1, 1, 4, 4],
                                     skips=[[], [1], [0, 1], [0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0, 1]]))
    # dilation is shown on convolutions only; pooling ignores it
    assert "conv7 sep5(d2) conv7 x2 maxpool3 x2" in line and "5 skips" in line
    # another space (EHR MLP): plain label-value pairs
    assert describe_pipeline({"layers": 4, "units": 512, "lr": 0.001}) == "layers 4, units 512, lr 0.001"


def test_summary_names_metric_cost_children_time_and_next_command(tmp_path):
    run = tmp_path / "pn17"
    trials = [_trial(0), _trial(1, "failed"), _trial(2, "infeasible"), _trial(3, metric=0.78, reward=0.81,
                                                                              flops=2_600_000)]
    phases = {"data": 30.0, "warmup": 10.0, "shared": 40.0, "controller": 5.0, "derive": 15.0}
    summary = build_summary(run, trials, _best(3, _sample(["conv7"] * 6), 2_600_000), phases, "physionet2017:/d")
    assert (summary["trials"], summary["scored"], summary["failed"], summary["infeasible"]) == (4, 2, 1, 1)
    best = summary["best"]
    assert best["metric_name"] == "cinc2017_f1" and best["metric"] == 0.78  # bare metric, not the reward 0.81
    assert best["flops_per_input"] == 2_600_000
    assert best["flops_per_record"] == 2 * 2_600_000  # the trial line's own count, never re-derived
    assert summary["phase_percent"] == {"data": 30.0, "warmup": 10.0, "shared": 40.0, "controller": 5.0,
                                        "derive": 15.0}
    assert summary["elapsed_s"] == 100.0
    assert summary["next_command"] == (f"n2nas retrain {run}/best_pipeline.json --data physionet2017:/d "
                                       "--out models/pn17")
    for key in ("run_dir", "trials", "best_reward", "best_pipeline"):  # what `n2nas search` always printed
        assert key in summary
    assert summary["best_reward"] == 0.81
    text = format_summary(summary)
    assert len(text.splitlines()) <= 8
    assert "conv7 x6" in text and "cinc2017_f1 0.780" in text and "2 scored, 1 failed, 1 infeasible" in text
    assert "latency 2.5 ms" in text and "MFLOPs per 30 s record" in text
    assert "data 30%" in text and "shared 40%" in text and "scoring" not in text  # only phases present
    assert text.splitlines()[-1].strip() == "next        " + summary["next_command"]
    assert "1:40 - data 30%" in text
    assert "1:40 of a 4:00 budget - data 30%" in format_summary({**summary, "budget_minutes": 4.0})


def test_summary_prefers_the_trial_lines_own_flops_per_record(tmp_path):
    trial = {**_trial(0), "flops_per_record": 7_000_000}
    summary = build_summary(tmp_path, [trial], _best(0, _sample(["conv3"])), {}, "sample")
    assert summary["best"]["flops_per_record"] == 7_000_000
    assert "7.00 MFLOPs per 30 s record" in format_summary(summary)


def test_summary_without_latency_trial_or_phases_says_na(tmp_path):
    trial = _trial(0, latency=None)
    trial["reward_terms"] = {}  # an older trial line: fall back to metrics["cinc2017_f1"]
    summary = build_summary(tmp_path / "r", [trial], _best(0, _sample(["sep5"] * 3)), {}, "sample")
    assert summary["best"]["metric"] == 0.5 and summary["best"]["latency_ms"] is None
    text = format_summary(summary)
    assert "latency n/a" in text and "sep5 x3" in text and "%" not in text


def test_write_summary_round_trips_and_leaves_no_temporary_file(tmp_path):
    summary = build_summary(tmp_path, [_trial(0)], _best(0, _sample(["conv3"])), {"shared": 1.0}, "sample")
    path = write_summary(tmp_path, summary)
    assert path == tmp_path / "summary.json"
    assert json.loads(path.read_text()) == summary == load_summary(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    assert load_summary(tmp_path / "missing") is None


def test_search_command_prints_the_summary_or_json(tmp_path, monkeypatch, capsys):
    """`n2nas search` ends with the human summary; --json prints the dict with the keys scripts always read."""
    import n2nas.cli
    import n2nas.cli.search_command
    import n2nas.searching.loop
    from tests.conftest import copy_sample_records
    from tests.test_search import FIXED, tiny_config

    data = tmp_path / "tiny2017"
    copy_sample_records(data, per_class=6)
    spec, run = f"physionet2017:{data}", tmp_path / "cli-run"
    from n2nas.presets import preset

    monkeypatch.setattr(n2nas.searching.loop.SearchConfig, "demo",
                        staticmethod(preset("demo")(lambda: tiny_config(budget_epochs=1))))
    real, results = n2nas.searching.loop.search, []
    monkeypatch.setattr(n2nas.searching.loop, "search", lambda *a, **kw: results.append(real(*a, **kw)) or results[-1])
    fix = [arg for k, v in FIXED.items() for arg in ("--fix", f"{k}={v}")]
    assert n2nas.cli.main(["search", "--data", spec, "--out", str(run), "--quiet", "--device", "cpu", *fix]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet: no progress display
    text = captured.out.splitlines()
    assert text[0] == f"search finished: {run}"
    assert text[-1].split(None, 1) == ["next", f"n2nas retrain {run}/best_pipeline.json --data {spec} "
                                               "--out models/cli-run"]
    n_ok = sum(t["status"] == "ok" for t in results[0].trials)
    assert any(line.split()[:3] == ["children", str(n_ok), "scored,"] for line in text)

    # --json, from summary.json when the search wrote one, else rebuilt from the result: the same keys either way
    monkeypatch.setattr(n2nas.searching.loop, "search", lambda *a, **kw: results[0])
    for attempt in range(2):
        assert n2nas.cli.main(["search", "--data", spec, "--out", str(run), "--json", "--device", "cpu"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["trials"] == len(results[0].trials) and printed["run_dir"] == str(run)
        assert printed["best_pipeline"] == str(run / "best_pipeline.json")
        assert printed["best_reward"] == results[0].best(1)[0].scores["reward"]
        (run / "summary.json").unlink(missing_ok=True)


def test_the_next_command_carries_the_presets_retrain_options(tmp_path):
    from n2nas.cli import build_parser
    from n2nas.searching.loop import SearchConfig

    options = SearchConfig.ehr_cpu().retrain_options
    summary = build_summary(tmp_path / "ehr", [_trial(0)], _best(0, _sample(["conv3"])), {}, "diabetes130:/d",
                            retrain_options=options)
    words = summary["next_command"].split()
    args = build_parser().parse_args(words[1:])  # the printed command parses as `n2nas retrain` would read it
    assert (args.epochs, args.class_weight) == (30, 0.5) and args.out == "models/ehr"
    assert SearchConfig.demo().retrain_options == ()
