"""Train once, deploy many: family members cut from one supernet, `n2nas derive`, and their bad inputs."""
from __future__ import annotations

import json
from pathlib import Path
from dataclasses import replace

import pytest

import n2nas
from n2nas.cli import main
from n2nas.errors import ConfigError
from n2nas.searching.family import FamilyConfig
from tests.test_search import tiny_config, tiny_data  # noqa: F401 - shared fixture

TARGETS = (6e6, 20e6)  # FLOPs per 30 s record: the tiny space's children span ~1.4 to ~100 MFLOPs


@pytest.fixture(scope="module")
def family_run(tiny_data, tmp_path_factory):  # noqa: F811
    run = tmp_path_factory.mktemp("family") / "run"
    config = tiny_config(budget_epochs=1, derive_children=1,
                         family=FamilyConfig(flops_targets=TARGETS, children=2, children_per_step=2, rescored=2))
    n2nas.search(tiny_data, config, out=run)
    return run


def test_each_target_gets_a_member_with_inherited_weights_under_it(family_run, tiny_data):  # noqa: F811
    from n2nas.models.evaluate import evaluate

    members = json.loads((family_run / "family" / "family.json").read_text())["members"]
    assert [m["flops_target"] for m in members] == list(TARGETS)
    trials = [json.loads(x) for x in (family_run / "trials.jsonl").read_text().splitlines()]
    rescored = {json.dumps(t["sample"], sort_keys=True): t for t in trials if t["phase"] == "family-derive"}
    for member in members:
        assert member["flops_per_record"] <= member["flops_target"] and member["weights"] == "inherited"
        pipeline = n2nas.load_pipeline(f"{member['model_dir']}/pipeline.json")
        # the standalone child with the supernet's weights and recalibrated BatchNorm scores what the supernet did
        assert member["val_metric"] == pytest.approx(rescored[json.dumps(pipeline.sample, sort_keys=True)]["metric"])
        scores = evaluate(member["model_dir"], tiny_data)  # a model folder `n2nas evaluate` reads as it is
        assert scores["n_records"] == len(tiny_data)
    from n2nas.searching.run_summary import format_summary, load_summary

    summary = load_summary(family_run)  # the summary is written after the family, and lists it
    assert [m["name"] for m in summary["family"]] == [m["name"] for m in members]
    assert summary["phase_seconds"]["family"] > 0 and "flops-0.006G" in format_summary(summary)


def test_each_target_names_the_member_it_deploys_from_the_kept_validation_predictions(family_run):
    from n2nas.searching.noise import load_predictions, read_comparisons

    family = json.loads((family_run / "family" / "family.json").read_text())
    members = {m["name"]: m for m in family["members"]}
    assert set(family["deploy"]) == set(members)
    for name, deployed in family["deploy"].items():
        # what a target deploys fits it, and is the member itself or a cheaper one
        assert members[deployed]["flops_per_record"] <= members[name]["flops_target"]
        assert members[deployed]["flops_per_record"] <= members[name]["flops_per_record"]
        assert load_predictions(family_run, members[name]["predictions"]).shape[1] == 4
    # the smaller member fits the larger target, so the larger target's choice was a comparison, and it is kept
    largest = max(members.values(), key=lambda m: m["flops_target"])
    candidates = read_comparisons(family_run)[f"deploy {largest['name']}"]["candidates"]
    assert {c["key"] for c in candidates} == set(members)
    assert [c["key"] for c in candidates if c["picked"]] == [family["deploy"][largest["name"]]]


def test_a_larger_member_no_better_than_a_cheaper_one_does_not_deploy_for_its_budget():
    import numpy as np

    from n2nas.metrics import CINC2017_CLASSES
    from n2nas.searching.family import deploy_choices
    from n2nas.searching.noise import metric_scorer

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    onehot = np.eye(4)
    noisy = onehot[np.where(rng.random(600) < 0.4, rng.integers(0, 4, 600), y)]
    small = {"name": "flops-0.05G", "flops_target": 0.05e9, "flops_per_record": 0.04e9, "params": 10}
    large = {"name": "flops-0.33G", "flops_target": 0.33e9, "flops_per_record": 0.3e9, "params": 90}
    score = metric_scorer("cinc2017_f1", CINC2017_CLASSES, False)
    # as good as the cheaper member (here: the same predictions): its budget deploys the cheaper one
    deploy, compared = deploy_choices([small, large], {"flops-0.05G": noisy, "flops-0.33G": noisy.copy()}, y, score)
    assert deploy == {"flops-0.05G": "flops-0.05G", "flops-0.33G": "flops-0.05G"}
    assert [c.key for c in compared["flops-0.33G"]] == ["flops-0.05G", "flops-0.33G"]
    assert "flops-0.05G" not in compared  # nothing cheaper fits its target
    # better by far more than the noise: it deploys itself
    deploy, _ = deploy_choices([small, large], {"flops-0.05G": noisy, "flops-0.33G": onehot[y]}, y, score)
    assert deploy["flops-0.33G"] == "flops-0.33G"
    # without kept predictions a member is compared with nothing
    deploy, compared = deploy_choices([small, large], {"flops-0.05G": noisy}, y, score)
    assert deploy == {"flops-0.05G": "flops-0.05G", "flops-0.33G": "flops-0.33G"} and not compared


def test_derive_adds_a_member_for_a_new_budget_without_training(family_run, tiny_data, tmp_path, capsys):  # noqa: F811
    from n2nas.searching.checkpoint import load_checkpoint

    before = load_checkpoint(family_run / "checkpoint")["runner"]["supernet"]
    # the search was given a Dataset, so the run recorded no SPEC: derive asks for it
    spec = "physionet2017:" + tiny_data.records[0].meta["files"][0].rsplit("/", 1)[0]
    assert main(["derive", str(family_run), "--max-flops", "12e6", "--out", str(tmp_path / "m12"), "--data", spec]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["flops_per_record"] <= 12e6 and (tmp_path / "m12" / "model.pt").exists()
    members = json.loads((family_run / "family" / "family.json").read_text())["members"]
    assert entry in members and len(members) == len(TARGETS) + 1
    after = load_checkpoint(family_run / "checkpoint")["runner"]["supernet"]
    assert all((before[k] == after[k]).all() for k in before)  # the supernet was not trained again


def test_a_member_is_written_without_the_denormal_weights_it_was_cut_with(family_run, tiny_data, tmp_path,  # noqa: F811
                                                                          monkeypatch, capsys):
    import shutil

    import torch
    from n2nas.train.numerics import denormal_mask
    from search_spaces.ecg import ECGSpace

    run = tmp_path / "run"
    shutil.copytree(family_run, run)  # derive adds to the run's family file, which other tests count
    copied, injected = ECGSpace.copy_shared_weights, []

    def with_denormals(self, supernet, child, sample):  # as a long shared training leaves them
        copied(self, supernet, child, sample)
        with torch.no_grad():
            for p in child.parameters():
                n = len(p.view(-1)[::7])  # denormals from their bits: the CLI's thread would flush 1e-39 to 0
                p.view(-1)[::7] = torch.arange(1, n + 1, dtype=torch.int32).view(torch.float32)
                injected.append(n)

    monkeypatch.setattr(ECGSpace, "copy_shared_weights", with_denormals)
    spec = "physionet2017:" + tiny_data.records[0].meta["files"][0].rsplit("/", 1)[0]
    assert main(["derive", str(run), "--max-flops", "12e6", "--out", str(tmp_path / "m"), "--data", spec]) == 0
    capsys.readouterr()
    weights = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    values = torch.cat([v.flatten().float() for v in weights.values() if v.is_floating_point()])
    assert sum(injected) > 100 and not denormal_mask(values).any()
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["denormals_zeroed"] == sum(injected)


def test_bad_targets_and_run_folders_are_one_line_errors(family_run, tiny_data, tmp_path, capsys):  # noqa: F811
    with pytest.raises(ConfigError, match="below the smallest child of ecg-small, .* FLOPs per 30 s record"):
        n2nas.search(tiny_data, replace(tiny_config(), family=FamilyConfig(flops_targets=(1e3,))), out=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before anything was written
    spec = "physionet2017:" + tiny_data.records[0].meta["files"][0].rsplit("/", 1)[0]
    assert main(["derive", str(family_run), "--max-flops", "1e3", "--out", str(tmp_path / "m"), "--data", spec]) == 2
    assert "--max-flops" in capsys.readouterr().err
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((family_run / "config.json").read_text())
    for run in (tmp_path / "missing", half):
        assert main(["derive", str(run), "--max-flops", "1e7", "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(run) in err


def test_a_family_that_cannot_be_cut_is_refused_before_a_run_folder_exists(tiny_data, tmp_path, capsys):  # noqa: F811
    spec = "physionet2017:" + tiny_data.records[0].meta["files"][0].rsplit("/", 1)[0]
    common = ["search", "--data", spec, "--space", "ecg-small", "--budget-epochs", "2", "--quiet",
              "--flops-targets", "6e6,20e6"]
    # a fine-tune longer than the whole search (2 members x 2 epochs > 2 search epochs)
    assert main([*common, "--finetune-epochs", "2", "--out", str(tmp_path / "tune")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--finetune-epochs" in err
    # every architecture decision pinned: nothing shares weights, there is no family to cut
    from search_spaces import get_space

    space = get_space("ecg-small").space
    default = space.default_sample()
    pins = [f"--fix={d.label}={v if isinstance(v := default[d.label], str) else json.dumps(v)}"
            for d in space.flat if d.kind == "architecture"]
    assert main([*common, *pins, "--out", str(tmp_path / "pinned")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--flops-targets" in err and "no free architecture decision" in err
    assert not (tmp_path / "tune").exists() and not (tmp_path / "pinned").exists()


def test_fine_tuned_members_keep_their_inherited_folder_and_say_how_they_were_trained(tiny_data, tmp_path):  # noqa: F811
    from n2nas.searching.family import read_family

    config = tiny_config(budget_epochs=2, derive_children=1,
                         family=FamilyConfig(flops_targets=(20e6,), children=2, children_per_step=2, rescored=2,
                                             finetune_epochs=1))
    n2nas.search(tiny_data, config, out=tmp_path / "run")
    member, = read_family(tmp_path / "run")
    assert member["weights"] == "fine-tuned (1 epochs)" and member["inherited_dir"].endswith("flops-0.02G-inherited")
    for folder, weights in ((member["model_dir"], member["weights"]), (member["inherited_dir"], "inherited")):
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
        assert metrics["weights"] == weights
    history = json.loads((Path(member["model_dir"]) / "history.json").read_text())
    assert len(history) == 1 and member["val_metric"] == pytest.approx(
        json.loads((Path(member["model_dir"]) / "pipeline.json").read_text())["scores"]["metric"])
    tuned = n2nas.evaluate(member["model_dir"], tiny_data)["cinc2017_f1"]
    inherited = n2nas.evaluate(member["inherited_dir"], tiny_data)["cinc2017_f1"]
    assert tuned >= 0 and inherited >= 0  # both folders load and score as they are


def test_a_search_killed_while_writing_its_family_resumes_and_keeps_what_it_wrote(tiny_data, tmp_path,  # noqa: F811
                                                                                   monkeypatch):
    import n2nas.searching.family as family

    config = tiny_config(budget_epochs=1, derive_children=1,
                         family=FamilyConfig(flops_targets=TARGETS, children=2, children_per_step=2, rescored=2))
    run, written = tmp_path / "run", []
    original = family.write_member

    def dies_on_the_second(*args, **kw):
        if written:
            raise KeyboardInterrupt  # as a kill between two members
        written.append(original(*args, **kw))
        return written[-1]

    monkeypatch.setattr(family, "write_member", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        n2nas.search(tiny_data, config, out=run)
    first = json.loads((run / "family" / "family.json").read_text())["members"]
    assert first == written
    monkeypatch.setattr(family, "write_member", original)
    n2nas.search(tiny_data, config, out=run, resume=True)
    members = json.loads((run / "family" / "family.json").read_text())["members"]
    assert [m["flops_target"] for m in members] == list(TARGETS) and first[0] in members  # kept as written
    steps = [json.loads(x)["step"] for x in (run / "trials.jsonl").read_text().splitlines()]
    assert steps == list(range(len(steps)))  # no trial lost or scored twice


def test_a_larger_budget_never_gets_a_worse_member(family_run):
    members = json.loads((family_run / "family" / "family.json").read_text())["members"]
    small, large = sorted((m for m in members if m["flops_target"] in TARGETS), key=lambda m: m["flops_target"])
    trials = [json.loads(x) for x in (family_run / "trials.jsonl").read_text().splitlines()]
    small_sample = n2nas.load_pipeline(f"{small['model_dir']}/pipeline.json").sample
    key = json.dumps(small_sample, sort_keys=True, default=list)
    # the smaller budget's member was rescored again under the larger limit, so it competed there
    again = [t for t in trials if t["phase"] == "family-derive" and json.dumps(t["sample"], sort_keys=True) == key]
    assert len(again) >= 2 and large["val_metric"] >= small["val_metric"]


def test_the_derive_phase_leaves_the_family_its_time():
    from n2nas.searching.budget import Budget
    from n2nas.searching.family import family_seconds
    from n2nas.searching.derivation import derive_stops

    family = FamilyConfig(flops_targets=(1e6, 1e7), children=32, rescored=4)
    after = family_seconds(family, 2.0, reward_share=0.5)  # 2 s to score a child on the whole validation split
    assert after > family_seconds(family, 2.0, reward_share=0.25) > 2 * 32 * 0.25 * 2.0
    assert family_seconds(FamilyConfig(), 2.0, 0.5) == 0 and family_seconds(family, None, 0.5) == 0
    budget = Budget(minutes=10, epochs=None, warmup=0.0, elapsed=600 - after)  # what is left is the family's time
    assert not derive_stops(budget, 3, 2.0, 0.0, finalists=0)  # without the family: derive on
    assert derive_stops(budget, 3, 2.0, after, finalists=0)    # with it: stop, it needs the rest


def test_a_child_far_under_its_target_grows_towards_it_and_stays_under(tiny_data):  # noqa: F811
    from types import SimpleNamespace

    import numpy as np

    from n2nas.measure.cost import ArchitectureCosts
    from n2nas.measure.reward import RewardConfig
    from n2nas.searching.member_search import grow_to_limit, option_ladders, smallest_child
    from search_spaces import get_space

    space_def = get_space("ecg-small")
    space = space_def.space.pinned({"fs": 100, "window": "crop:5"})
    costs = ArchitectureCosts(space_def, SimpleNamespace(dataset=tiny_data))
    small, least = smallest_child(space, costs)
    target = 20e6
    grown = grow_to_limit(small, space, costs, RewardConfig(max_flops=target), np.random.default_rng(0),
                          option_ladders(space, costs))
    flops = costs.of(grown)["flops_per_record"]
    assert least < 0.5 * target < flops <= target  # from the smallest child to within a step of the limit


def test_finetune_epochs_zero_turns_the_fine_tune_off_and_a_negative_count_is_refused(capsys):
    from n2nas.cli import build_parser
    from n2nas.cli.search_command import search_config

    args = build_parser().parse_args(["search", "--preset", "cpu-hour-family", "--finetune-epochs", "0"])
    assert search_config(args).family.finetune_epochs == 0
    assert main(["search", "--data", "sample", "--finetune-epochs", "-1", "--flops-targets", "20e6"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--finetune-epochs" in err


def test_a_floor_keeps_a_members_candidates_near_its_target(tiny_data):  # noqa: F811
    from types import SimpleNamespace

    import numpy as np

    from controllers import make_controller
    from n2nas.measure.cost import ArchitectureCosts
    from n2nas.measure.reward import RewardConfig
    from n2nas.searching.member_search import in_band, search_member
    from search_spaces import get_space

    space_def = get_space("ecg-small")
    space = space_def.space.pinned({"fs": 100, "window": "crop:5"})
    costs = ArchitectureCosts(space_def, SimpleNamespace(dataset=tiny_data))
    rng, target = np.random.default_rng(0), 20e6
    samples = [space.random_sample(rng) for _ in range(24)]
    flops = {id(s): costs.of(s)["flops_per_record"] for s in samples}
    band = in_band(samples, costs, 0.5 * target, target)
    assert band and all(0.5 * target <= flops[id(s)] <= target for s in band)
    # no child in the band: a member is still cut from those under the limit; carried members are not let in
    top = max(flops.values())
    assert in_band(samples, costs, 2 * top, 3 * top) == samples
    assert in_band(samples, costs, 1e15, 2e15, fall_back=False) == []

    rescored: list[float] = []

    def score(children, phase, reward):
        """Rewards that favour the smallest child, as flat, untrained shared weights tend to."""
        if phase == "family-derive":
            rescored.extend(costs.of(c)["flops_per_record"] for c in children)
        return [-costs.of(c)["flops_per_record"] / 1e9 for c in children]

    family = FamilyConfig(flops_targets=(target,), children=8, children_per_step=4, rescored=3, floor=0.5,
                          grow=0.0)
    controller = make_controller("random", space.tokens, seed=0)
    stats: dict = {}
    member = search_member(target, family, controller, space, costs, RewardConfig(), score, stats=stats)
    assert stats["floor_flops"] == 0.5 * target and stats["children"] == 8
    assert rescored and all(0.5 * target <= f <= target for f in rescored)
    assert 0.5 * target <= costs.of(member)["flops_per_record"] <= target
    with pytest.raises(ConfigError, match="family.floor"):
        FamilyConfig(floor=1.0)
    with pytest.raises(ConfigError, match="finetune_share"):
        FamilyConfig(finetune_share=1.0)
