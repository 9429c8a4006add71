"""A preset run through the command line is the preset: options left unset never replace its values."""
from __future__ import annotations

from dataclasses import replace

import pytest

from n2nas.cli import build_parser
from n2nas.cli.search import search_config
from n2nas.measure.reward import RewardConfig
from n2nas.searching.loop import SEARCH_PRESETS, SearchConfig


def cli_config(*argv: str) -> SearchConfig:
    return search_config(build_parser().parse_args(["search", *argv]))


@pytest.mark.parametrize("name", list(SEARCH_PRESETS))
def test_every_preset_through_the_cli_is_the_preset(name):
    assert cli_config("--preset", name) == SearchConfig.named(name)


def test_cpu_hour_keeps_its_accuracy_reward_unless_an_option_changes_it():
    assert cli_config("--preset", "cpu-hour", "--seed", "3").reward == RewardConfig.accuracy_only()
    assert cli_config("--preset", "cpu-hour", "--flops-weight", "-0.1").reward == \
        replace(RewardConfig.accuracy_only(), flops_weight=-0.1)
    assert cli_config("--preset", "cpu-hour", "--reward", "mnas").reward == RewardConfig.mnas()


def test_given_options_change_only_their_fields():
    base = SearchConfig.named("demo")
    config = cli_config("--preset", "demo", "--controller", "evolution", "--controller-preset", "real2019",
                        "--no-latency", "--fix", "fs=100", "--backend", "ray", "--workers", "2")
    assert config == replace(base, controller="evolution", controller_preset="real2019", fixed={"fs": 100},
                             measure=replace(base.measure, latency=replace(base.measure.latency, enabled=False)),
                             runner=replace(base.runner, backend="ray", workers=2))


def test_the_help_names_every_preset_with_its_budget(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in SEARCH_PRESETS:
        assert f"{name} = " in out, name


def test_finals_option_turns_the_scratch_finals_on_or_off():
    trained = cli_config("--preset", "cpu-3h", "--finals", "2").finals
    assert (trained.children, trained.reference) == (2, True)
    off = cli_config("--preset", "demo", "--finals", "0").finals
    assert (off.children, off.reference) == (0, False)
    assert cli_config("--preset", "demo").finals == SearchConfig.named("demo").finals


def test_train_once_presets_search_the_residual_space_for_the_issue_budgets():
    for name in ("cpu-3h", "gpu"):
        config = SearchConfig.named(name)
        assert config.space == "ecg-res"
        assert {0.05e9, 0.1e9, 0.33e9} <= set(config.family.flops_targets)
    assert SearchConfig.named("cpu-3h").budget_minutes <= 180


def test_the_gpu_preset_on_a_machine_without_cuda_is_one_line_and_writes_nothing(tmp_path, capsys):
    import torch

    from n2nas.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["search", "--preset", "gpu", "--data", "sample", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device" in err and "CUDA" in err
    assert not (tmp_path / "run").exists()
