"""Every option of every command explains itself: help text, and the default of anything that takes a value."""
import argparse

import pytest

from n2nas.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, path=()):
    """(command words, parser) for the root and every nested subcommand."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, path + (name,))


COMMANDS = list(_commands(build_parser()))
LEAVES = [path for path, p in COMMANDS if path and not any(isinstance(a, argparse._SubParsersAction)
                                                           for a in p._actions)]


def test_the_tree_has_every_documented_command():
    names = {" ".join(path) for path in LEAVES}
    assert names >= {"search", "retrain", "evaluate", "export", "data summary", "space show", "space params",
                     "grid", "tune", "flops", "report"}


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda p: " ".join(p) or "n2nas")
def test_every_option_has_help_and_names_its_default(path):
    parser = dict(COMMANDS)[path]
    problems = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not action.help or action.help == argparse.SUPPRESS or len(action.help.strip()) < 8:
            problems.append(f"{name}: no help text")
            continue
        takes_value = action.option_strings and action.nargs != 0
        if takes_value and not action.required and "default" not in action.help.lower():
            problems.append(f"{name}: help does not say its default ({action.help!r})")
    assert not problems, f"n2nas {' '.join(path)}: " + "; ".join(problems)


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda p: " ".join(p) or "n2nas")
def test_help_of_each_command_exits_0(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: n2nas")
    parser = dict(COMMANDS)[path]
    for action in parser._actions:  # every option appears in the rendered help
        for option in action.option_strings:
            assert option in out, option


def test_search_preset_help_states_each_budget(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for words in ("demo", "4 minutes", "cpu-hour", "60 minutes", "gpu", "no time budget", "10 epochs"):
        assert words in out, words


@pytest.mark.parametrize("argv, problem", [
    (["search", "--budget-epochs", "2.5"], "must be a whole number, got 2.5"),
    (["retrain", "x.json", "--epochs", "0"], "must be positive, got 0"),
    (["grid", "--max-minutes", "soon"], "not a number: soon"),
])
def test_a_bad_number_is_one_line_naming_the_option_and_exit_2(argv, problem, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and problem in err and argv[-2] in err, err


def test_an_int_option_takes_a_whole_number_written_in_any_form():
    args = build_parser().parse_args(["search", "--budget-epochs", "1e1"])
    assert args.budget_epochs == 10 and isinstance(args.budget_epochs, int)
