"""Presets: one mechanism for every family, each preset builds, the command line offers exactly the presets, and a
preset run through the command line is the preset (options left unset never replace its values)."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import replace

import pytest

from controllers import CONTROLLERS, controller_class, controller_presets
from controllers.enas import ENASConfig
from controllers.evolution import EvolutionConfig
from n2nas.cli import build_parser
from n2nas.cli.search_command import search_config
from n2nas.compress.prune import PruneConfig
from n2nas.compress.quantize import QATConfig
from n2nas.data.augment import AugmentConfig
from n2nas.data.preprocess import PreprocessConfig
from n2nas.data.synthetic import SyntheticECGConfig
from n2nas.data.synthetic_ehr import SyntheticEHRConfig
from n2nas.data.windows import WindowConfig
from n2nas.errors import ConfigError
from n2nas.grid.cells import GridPreset
from n2nas.measure.latency import LatencyConfig
from n2nas.measure.reward import RewardConfig
from n2nas.presets import named, presets_of, summary
from n2nas.models.retrain import RetrainConfig
from n2nas.runners.shared import SharedTrainingConfig
from n2nas.searching.finals import FinalsConfig
from n2nas.searching.loop import SearchConfig
from n2nas.searching.screen import ScreenConfig
from n2nas.searching.tune import TuneConfig
from n2nas.train.trainer import FitConfig
from search_spaces.ecg import ECGSpaceConfig
from search_spaces.ecg_res import ECGResConfig
from search_spaces.ehr_mlp import EHRSpaceConfig

FAMILIES = (SearchConfig, RewardConfig, ENASConfig, EvolutionConfig, ECGSpaceConfig, ECGResConfig, EHRSpaceConfig,
            GridPreset, SyntheticECGConfig, SyntheticEHRConfig, PruneConfig, QATConfig, AugmentConfig,
            PreprocessConfig, WindowConfig, LatencyConfig, ScreenConfig, FinalsConfig, SharedTrainingConfig, TuneConfig,
            RetrainConfig, FitConfig)
EVERY_PRESET = [(cls, name) for cls in FAMILIES for name in presets_of(cls)]


def cli_config(*argv: str) -> SearchConfig:
    return search_config(build_parser().parse_args(["search", *argv]))


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


@pytest.mark.parametrize("cls,name", EVERY_PRESET, ids=lambda v: getattr(v, "__name__", v))
def test_every_preset_of_every_family_builds_and_says_what_it_is_for(cls, name):
    built = named(cls, name)
    assert isinstance(built, cls) and dataclasses.is_dataclass(built)
    assert built == named(cls, name)  # a preset is a value: building it twice gives the same one
    assert summary(cls, name) and "\n" not in summary(cls, name)


def test_every_family_has_presets_and_an_unknown_name_is_one_error_naming_the_option():
    assert all(presets_of(cls) for cls in FAMILIES)
    with pytest.raises(ConfigError, match="--preset.*'thorough'.*known: demo, cpu-hour"):
        named(SearchConfig, "thorough")


def test_cli_choices_are_the_presets():
    search = subcommand("search")
    assert option(search, "--preset").choices == list(presets_of(SearchConfig))
    assert list(presets_of(SearchConfig)) == ["demo", "cpu-hour", "cpu-hour-family", "cpu-3h", "12-lead", "gpu",
                                              "ehr-cpu", "default"]
    assert option(search, "--reward").choices == list(presets_of(RewardConfig)) == ["mnas", "accuracy",
                                                                                   "mnas-latency"]
    assert option(subcommand("tune"), "--preset").choices == list(presets_of(TuneConfig))
    assert list(controller_presets("enas")) == ["few_updates", "paper", "enas_macro_script"]
    assert list(controller_presets("evolution")) == ["small", "real2019"]
    controller_help = option(search, "--controller-preset").help
    for name in CONTROLLERS:
        cls = controller_class(name)
        assert list(controller_presets(name)) == (list(presets_of(cls.config_class)) if cls.config_class else [])
        for preset_name in controller_presets(name):
            assert preset_name in controller_help
    grid_help = option(subcommand("grid"), "--preset").help
    assert all(name in grid_help for name in presets_of(GridPreset))
    assert list(presets_of(GridPreset)) == ["diagnosenet", "residual-lr-batch"]


@pytest.mark.parametrize("name", list(presets_of(SearchConfig)))
def test_every_preset_through_the_cli_is_the_preset(name):
    assert cli_config("--preset", name) == named(SearchConfig, name)


def test_cpu_hour_keeps_its_accuracy_reward_unless_an_option_changes_it():
    assert cli_config("--preset", "cpu-hour", "--seed", "3").reward == RewardConfig.accuracy_only()
    assert cli_config("--preset", "cpu-hour", "--flops-weight", "-0.1").reward == \
        replace(RewardConfig.accuracy_only(), flops_weight=-0.1)
    assert cli_config("--preset", "cpu-hour", "--reward", "mnas").reward == RewardConfig.mnas()


def test_given_options_change_only_their_fields():
    base = named(SearchConfig, "demo")
    config = cli_config("--preset", "demo", "--controller", "evolution", "--controller-preset", "real2019",
                        "--no-latency", "--fix", "fs=100", "--backend", "ray", "--workers", "2")
    assert config == replace(base, controller="evolution", controller_preset="real2019", fixed={"fs": 100},
                             measure=replace(base.measure, latency=replace(base.measure.latency, enabled=False)),
                             runner=replace(base.runner, backend="ray", workers=2))


def test_the_help_names_every_preset_with_its_budget(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    # compared without whitespace: argparse may wrap a hyphenated word ("ehr-mlp-small") at its hyphen
    out = "".join(capsys.readouterr().out.split())
    for name in presets_of(SearchConfig):
        assert "".join(f"{name} = {summary(SearchConfig, name)}".split()) in out, name


def test_finals_option_turns_the_scratch_finals_on_or_off():
    trained = cli_config("--preset", "cpu-3h", "--finals", "2").finals
    assert (trained.children, trained.reference) == (2, True)
    off = cli_config("--preset", "demo", "--finals", "0").finals
    assert (off.children, off.reference) == (0, False)
    assert cli_config("--preset", "demo").finals == named(SearchConfig, "demo").finals


def test_train_once_presets_search_the_residual_space_for_the_issue_budgets():
    for name in ("cpu-3h", "gpu"):
        config = named(SearchConfig, name)
        assert config.space == "ecg-res"
        assert {0.05e9, 0.1e9, 0.33e9} <= set(config.family.flops_targets)
    assert named(SearchConfig, "cpu-3h").budget_minutes <= 180


def test_the_gpu_preset_on_a_machine_without_cuda_is_one_line_and_writes_nothing(tmp_path, capsys):
    import torch

    from n2nas.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["search", "--preset", "gpu", "--data", "sample", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device" in err and "CUDA" in err
    assert not (tmp_path / "run").exists()


def test_cpu_3h_is_the_hour_family_recipe_with_three_hours_and_targets_its_pinned_input_can_reach():
    """cpu-3h fine-tunes its members on cpu-hour-family's input and rule, and every target lies within the FLOPs
    the space reaches on that input: a target above its largest child would only cut a second copy of it."""
    from n2nas.measure.cost import pipeline_cost
    from n2nas.space import Pipeline
    from search_spaces import get_space

    hour, three = named(SearchConfig, "cpu-hour-family"), named(SearchConfig, "cpu-3h")
    assert three.budget_minutes == 180 and three.fixed == hour.fixed and three.shared == hour.shared
    assert replace(three.family, flops_targets=hour.family.flops_targets) == hour.family
    assert three.family.finetune_epochs > 0 and three.family.floor > 0
    space = get_space(three.space).space
    largest = {**space.default_sample(), **three.fixed}
    for stage in range(4):
        largest.update({f"stage{stage}/depth": 3, f"stage{stage}/width": 1.0, f"stage{stage}/kernel": 15,
                        f"stage{stage}/stride": 2})
    pipeline = Pipeline(three.space, largest, data={"n_leads": 1, "classes": ["N", "A", "O", "~"]})
    most = pipeline_cost(pipeline)["flops_per_record"]
    assert max(three.family.flops_targets) <= most < 1e9
