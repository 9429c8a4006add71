"""Shared fixtures: small copies of the bundled sample that tests may corrupt freely."""
from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import pytest

from n2nas.data.spec import bundled_sample_dir


def load_benchmark(name: str):
    """``benchmarks/NAME.py`` imported as a module (the scripts are not a package), freshly each call."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_sample_records(dst: Path, per_class: int = 2) -> list[tuple[str, str]]:
    """Copy ``per_class`` records of each label from the bundled sample into ``dst`` with their REFERENCE rows."""
    src = bundled_sample_dir()
    with open(src / "REFERENCE.csv", newline="") as fh:
        rows = [tuple(r) for r in csv.reader(fh) if r]
    chosen: list[tuple[str, str]] = []
    for label in ("N", "A", "O", "~"):
        chosen += [r for r in rows if r[1] == label][:per_class]
    dst.mkdir(parents=True, exist_ok=True)
    for rid, _ in chosen:
        for ext in (".hea", ".mat"):
            shutil.copy2(src / f"{rid}{ext}", dst / f"{rid}{ext}")
    with open(dst / "REFERENCE.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(chosen)
    return chosen


def default_child_flops(space_name: str, space, dataset) -> float:
    """FLOPs per 30 s record of ``space``'s (pinned) default child, counted as ``n2nas flops`` counts an exported
    pipeline: the reward's default FLOPs target."""
    from n2nas.measure.cost import RECORD_SECONDS, pipeline_cost
    from n2nas.space import Pipeline
    from search_spaces import get_space

    data = {"n_leads": get_space(space_name).input_size(dataset), "classes": list(dataset.classes)}
    return pipeline_cost(Pipeline(space_name, space.default_sample(), data), RECORD_SECONDS)["flops_per_record"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Derived data of every test goes to this session's temporary folder, never to the user's cache."""
    monkeypatch.setenv("N2NAS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def mini2017(tmp_path: Path) -> Path:
    """A PhysioNet-2017 folder of 8 real records (2 per class) in a temporary directory."""
    folder = tmp_path / "mini2017"
    copy_sample_records(folder)
    return folder


@pytest.fixture(scope="session")
def ray_session():
    """One small local Ray for the whole test session (2 CPUs, no dashboard, ~80 MB object store)."""
    import os

    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, log_to_driver=False)
    yield ray
    ray.shutdown()
