"""The README's "From Python" examples run as written, on a tiny data folder and a tiny budget.

Only the data SPEC and the size lines are swapped (each swap must find its text, so a README edit that drops
one fails here instead of silently testing something else); everything else runs verbatim, in order, in one
namespace, from a temporary working directory.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import copy_sample_records
from tests.test_search import tiny_config

README = Path(__file__).resolve().parents[1] / "README.md"


def from_python_blocks() -> list[str]:
    """The ```python blocks of the README's "From Python" section (up to the next heading of its level or above)."""
    text = README.read_text()
    start = text.index("### From Python")
    end = re.search(r"^#{1,3} ", text[start + 4:], flags=re.M)
    section = text[start:start + 4 + end.start()] if end else text[start:]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _swap(code: str, old: str, new: str) -> str:
    assert old in code, f"README example no longer contains {old!r}: update tests/test_readme_examples.py"
    return code.replace(old, new)


def test_the_section_has_a_search_and_a_retrain_example():
    blocks = from_python_blocks()
    assert len(blocks) == 2
    assert "n2nas.search(" in blocks[0] and ".best(1)" in blocks[0] and "n2nas.build_model(" in blocks[0]
    assert "retrain(" in blocks[1] and "evaluate(" in blocks[1]


@pytest.mark.timeout(600)
def test_from_python_examples_run(tmp_path, monkeypatch, capsys):
    data = tmp_path / "tiny2017"
    copy_sample_records(data, per_class=6)
    spec = f"physionet2017:{data}"
    monkeypatch.chdir(tmp_path)  # the examples write runs/demo and models/demo relative to the working directory
    search, retrain = from_python_blocks()
    search = _swap(search, "n2nas.SearchConfig.demo()", "_tiny_config()")
    search = _swap(search, 'n2nas.search("sample"', f"n2nas.search({spec!r}")
    retrain = _swap(retrain, 'n2nas.load_dataset("sample")', f"n2nas.load_dataset({spec!r})")
    retrain = _swap(retrain, "RetrainConfig(epochs=15)", "RetrainConfig(epochs=1, patience=1, device='cpu')")
    namespace = {"_tiny_config": lambda: tiny_config(budget_epochs=1)}
    exec(compile(search, "README.md (From Python, search)", "exec"), namespace)
    exec(compile(retrain, "README.md (From Python, retrain)", "exec"), namespace)

    assert (tmp_path / "runs/demo/best_pipeline.json").exists()
    n_params = sum(p.numel() for p in namespace["model"].parameters())
    assert n_params == namespace["best"].scores["params"]  # the built module is the searched child
    assert (tmp_path / "models/demo/model.pt").exists()
    scores = namespace["scores"]
    assert scores["n_records"] == len(namespace["split"].val) and 0.0 <= scores["cinc2017_f1"] <= 1.0
    printed = capsys.readouterr().out.splitlines()  # each example's print line ran (retrain logs epochs between)
    assert printed[0].split() == [namespace["best"].sample["window"], str(namespace["best"].scores["reward"]),
                                  str(len(namespace["result"].trials))]
    assert printed[-1].split()[0] == str(namespace["trained"]["epochs_run"])
