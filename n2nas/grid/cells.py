"""Hyperparameter grids over any search space's decisions: every cell trained from scratch, one table.

A cell is one plain, picklable function call, :func:`run_cell`, so any runner can map over cells
(``run_grid(..., mapper=pool.map)``); the default mapper is Python's ``map`` in this process. Each cell trains
through the one trainer, as ``n2nas retrain`` trains its pipeline unless the grid's ``protocol`` says otherwise
(``diagnosenet``: Adam, <= 40 epochs, early stopping on validation macro F1, test-row scores); its energy is read by ``n2nas.measure.energy.pick_meter``
(``None`` / ``"unmeasured"`` without a hardware counter, never estimated). A finished cell leaves
``cells/NNN/result.json`` and is not trained again when the same grid runs into the same folder.

Named presets reproduce published grids: ``diagnosenet`` (DiagnoseNET's Table 4 / Fig. 4: units x layers of the
EHR MLP, Adam 0.001, <= 40 epochs) and ``residual-lr-batch`` (the compression thesis' Tables 2-5: the
Hannun / DiagnoseNET residual ECG network over lr {0.01, 0.001} x batch size {16, 32, 64}).
"""
from __future__ import annotations

import functools
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from n2nas.errors import ConfigError
from n2nas.grid.results import format_table, table_columns, write_csv, write_plot
from n2nas.presets import named, preset
from n2nas.storage import atomic_write_text


PROTOCOLS = ("retrain", "diagnosenet")
TEST_PROBS = "test_probs.npy"  # a DiagnoseNET cell's test-row probabilities, in its folder


@dataclass(frozen=True)
class GridConfig:
    """How each cell trains. ``protocol`` "retrain" (default): a cell is ``n2nas retrain`` of its pipeline with these
    epochs, patience, schedule, seed and device, scored on its validation split; "diagnosenet": DiagnoseNET's
    protocol for EHR MLPs (a seeded 3-way split with 15 % test rows, Adam at a constant lr, stopped on validation
    macro F1, scored on the test rows). ``val_fraction`` (None: the protocol's own, 15 % or 5 %) lets a benchmark
    give the grid the same validation rows as its other rows; ``max_minutes`` caps each cell."""

    epochs: int = 40
    patience: int = 5
    seed: int = 0
    device: str = "auto"
    max_minutes: float | None = None
    val_fraction: float | None = None
    schedule: str = "budget"
    protocol: str = "retrain"

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ConfigError("protocol", f"expected one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")


@dataclass(frozen=True)
class GridPreset:
    """A published grid: the space its cells live in, the axes, the values every cell shares, how to train."""

    name: str
    space: str
    families: tuple[str, ...]
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    base: dict[str, Any] = field(default_factory=dict)
    config: GridConfig = GridConfig()
    data: str = "sample"
    about: str = ""

    @staticmethod
    @preset()
    def diagnosenet() -> "GridPreset":
        """DiagnoseNET's Table 4 / Fig. 4 on the EHR MLP: hidden layers x units, Adam 0.001, <= 40 epochs."""
        from search_spaces.ehr_mlp import LAYERS, UNITS

        return GridPreset(
            "diagnosenet", "ehr-mlp", ("ehr-mlp",), (("layers", LAYERS), ("units", UNITS)),
            {"lr": 0.001, "activation": "relu", "dropout": 0.2, "batch_size": 768},
            GridConfig(epochs=40, patience=5, protocol="diagnosenet"), "synthetic-ehr",
            "DiagnoseNET Table 4 / Fig. 4: hidden layers x units, Adam 0.001, <= 40 epochs, early stopping")

    @staticmethod
    @preset()
    def residual_lr_batch() -> "GridPreset":
        """The compression thesis' Tables 2-5: the Hannun / DiagnoseNET residual ECG net, lr x batch size."""
        return GridPreset(
            "residual-lr-batch", "ecg-hannun", ("ecg", "ecg-hannun"),
            (("lr", (0.01, 0.001)), ("batch_size", (16, 32, 64))), {"__fixed_pipeline__": "hannun"},
            GridConfig(epochs=40, patience=8, schedule="plateau"), "sample",
            "Compression thesis Tables 2-5: Hannun/DiagnoseNET residual ECG net, lr x batch size")


def get_preset(name: str, space: str | None = None) -> GridPreset:
    """The ``--preset`` ``name`` of :class:`GridPreset`; ConfigError when unknown or when ``space`` is not one it
    belongs to."""
    grid = named(GridPreset, name, "--preset")
    if space is not None and space not in grid.families:
        raise ConfigError("--space", f"preset {name!r} is a grid over {' / '.join(grid.families)}, not {space!r}")
    return grid


def parse_grid(items: Iterable[str]) -> list[tuple[str, tuple[Any, ...]]]:
    """``["lr=[0.01,0.001]", "batch_size=16,32"]`` -> ``[("lr", (0.01, 0.001)), ("batch_size", (16, 32))]``.

    Values are read as JSON where they can be (numbers, true/false, null), else kept as strings.
    """
    axes: list[tuple[str, tuple[Any, ...]]] = []
    for item in items:
        label, sep, text = item.partition("=")
        label, text = label.strip(), text.strip()
        if not sep or not label or not text:
            raise ConfigError("--grid", f"expected LABEL=[v1,v2,...], got {item!r}")
        try:
            values = json.loads(text) if text.startswith("[") else [_value(v) for v in text.split(",")]
        except ValueError:
            raise ConfigError("--grid", f"cannot read the values of {item!r} (use JSON: LABEL=[1,2] or "
                                        "LABEL=[\"a\",\"b\"])") from None
        if not isinstance(values, list) or not values:
            raise ConfigError("--grid", f"{label}: give a non-empty list of values")
        if any(label == seen for seen, _ in axes):
            raise ConfigError("--grid", f"{label} given twice")
        axes.append((label, tuple(values)))
    return axes


def _value(text: str) -> Any:
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def plan_cells(space_def, axes: list[tuple[str, tuple[Any, ...]]], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the axes on top of ``base`` (the space's defaults where ``base`` says nothing);
    each cell is validated against the space, so a value outside a decision's options fails before training."""
    from n2nas.space import index_of

    space = space_def.space
    options = {d.label: d for d in space.flat}
    for label, values in axes:
        if label not in options:
            raise ConfigError("--grid", f"{label!r} is not a decision of space {space.name!r}")
        for v in values:
            index_of(options[label], v)
    start = {**space.default_sample(), **base}
    cells = []
    for combo in itertools.product(*(values for _, values in axes)):
        sample = {**start, **{label: options[label].options[index_of(options[label], v)]
                              for (label, _), v in zip(axes, combo)}}
        space.validate(sample)
        cells.append(sample)
    return cells


@dataclass(frozen=True)
class CellTask:
    """One cell: everything :func:`run_cell` needs, picklable (a runner can ship it to a worker)."""

    index: int
    space: str
    sample: dict[str, Any]
    values: dict[str, Any]
    out: str
    config: GridConfig


def run_cell(task: CellTask, dataset, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Train one cell from scratch and return its table row (read back from ``result.json`` when it exists)."""
    from search_spaces import get_space

    out = Path(task.out)
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())["row"]
    out.mkdir(parents=True, exist_ok=True)
    space_def = get_space(task.space)
    trainer = diagnosenet_cell if task.config.protocol == "diagnosenet" else retrain_cell
    meter = _meter(task.config.device)
    start = meter.begin() if meter else None
    result = trainer(space_def, task.sample, dataset, out, task.config, log=log)
    joules, source = (None, "unmeasured")
    if meter is not None:
        reading = meter.end(start)
        joules, source = reading.joules, reading.source
        meter.close()
    row = {"cell": task.index, **task.values, "status": result["status"], "params": result["params"],
           **_metric_columns(result.get("metrics", {}), dataset),
           "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
           "time_s": result["train_seconds"], "energy_j": joules, "energy_source": source,
           "eval_split": result["eval_split"]}
    atomic_write_text(done, json.dumps({"row": row, "sample": task.sample, "result": result}, indent=1,
                                       default=_plain))
    return row


def _plain(x):
    return x.item() if hasattr(x, "item") else str(x)


def _meter(device: str):
    """``n2nas.measure.energy.pick_meter`` for the cell's device, or None when that module is unavailable."""
    try:
        from n2nas.measure.energy import pick_meter
        from n2nas.train.primitives import pick_device

        return pick_meter(str(pick_device(device)))
    except (ImportError, AttributeError, OSError):
        return None


def _metric_columns(metrics: dict[str, Any], dataset) -> dict[str, Any]:
    """The clinical scores a grid table shows: CinC 2017 F1 and per-class AUROC for ECG classes, macro /
    weighted F1 and accuracy everywhere."""
    cols: dict[str, Any] = {}
    from n2nas.metrics import SCORE_COLUMNS

    for key in SCORE_COLUMNS:
        if key in metrics or (key in ("macro_f1", "accuracy")):
            cols[key] = metrics.get(key)
    if len(dataset.classes) <= 8:  # per-class AUROC columns stay readable for few classes (ECG: N/A/O/~)
        for cls in dataset.classes:
            cols[f"auroc_{cls}"] = metrics.get("per_class_auroc", {}).get(cls)
    return cols


def retrain_cell(space_def, sample: dict[str, Any], dataset, out: Path, config: GridConfig,
                 log=print) -> dict[str, Any]:
    """A cell as ``n2nas retrain`` trains its pipeline (:func:`n2nas.models.retrain.retrain`, any modality), with the grid's
    epochs, patience, schedule, seed, device and minute cap; scored on the retrain's validation split."""
    import dataclasses

    from n2nas.models.retrain import RetrainConfig, retrain
    from n2nas.space import Pipeline

    cfg = dataclasses.replace(RetrainConfig(), epochs=config.epochs, patience=config.patience, seed=config.seed,
                              device=config.device, max_minutes=config.max_minutes, schedule=config.schedule)
    if config.val_fraction is not None:
        cfg = dataclasses.replace(cfg, val_fraction=config.val_fraction)
    summary = retrain(Pipeline(space_def.name, sample), dataset, out / "model", cfg, log=log)
    child = space_def.build_child(sample, space_def.input_size(dataset), len(dataset.classes))
    return {"status": "ok", "params": sum(p.numel() for p in child.parameters()),
            "metrics": summary["validation"], "best_epoch": summary["best_epoch"],
            "epochs_run": summary["epochs_run"], "train_seconds": summary["train_seconds"], "eval_split": "val"}


def diagnosenet_cell(space_def, sample: dict[str, Any], dataset, out: Path, config: GridConfig,
                     log=print) -> dict[str, Any]:
    """DiagnoseNET's protocol for one EHR MLP (:meth:`n2nas.train.trainer.FitConfig.diagnosenet`): a seeded,
    stratified split with ``val_fraction`` (default 5 %) validation and 15 % test rows, the encoder fitted on the
    training rows, test-row metrics of the best validation epoch; the test probabilities go to ``out/TEST_PROBS``.
    A loss that stops being finite ends the cell with ``status: "diverged"`` instead of raising, so a grid goes on.
    """
    import dataclasses

    import numpy as np

    from n2nas.data.table import fit_on_training
    from n2nas.train.primitives import pick_device
    from n2nas.train.rows import RowBatches, predict_rows, score_rows, split_indices
    from n2nas.train.trainer import FitConfig, fit

    settings = space_def.training_settings(sample)
    device = pick_device(config.device)
    val = 0.05 if config.val_fraction is None else config.val_fraction
    train_idx, val_idx, test_idx = split_indices(dataset, val, 0.15, config.seed)
    dataset = fit_on_training(dataset, train_idx)  # a clinical table's encoder sees the training rows only
    targets = dataset.label_matrix().astype(np.float32)
    recipe = dataclasses.replace(FitConfig.diagnosenet(settings["lr"], settings["batch_size"], config.epochs,
                                                       config.seed),
                                 patience=config.patience, max_minutes=config.max_minutes)

    def validate(model) -> float:
        probs = predict_rows(model, dataset, val_idx, dataset.multilabel, device)
        return score_rows(probs, targets[val_idx], dataset)["macro_f1"]

    fitted = fit(lambda: space_def.build_child(sample, dataset.n_inputs, len(dataset.classes)),
                 RowBatches(dataset, train_idx, targets, device), validate, recipe, device=device,
                 multilabel=dataset.multilabel, log=log)
    result = {"status": fitted.status, "params": sum(p.numel() for p in fitted.model.parameters()),
              "best_epoch": fitted.best_epoch, "epochs_run": len(fitted.history),
              "train_seconds": fitted.train_seconds, "eval_split": "test", "history": fitted.history,
              "n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(test_idx), "metrics": {}}
    if fitted.improved:
        probs = predict_rows(fitted.model, dataset, test_idx, dataset.multilabel, device)
        result["metrics"] = {**score_rows(probs, targets[test_idx], dataset), "val_macro_f1": fitted.best_score}
        np.save(Path(out) / TEST_PROBS, probs)
    return result


@dataclass
class GridResult:
    """Rows of the grid table (one dict per cell) and the files written."""

    rows: list[dict[str, Any]]
    table: str
    csv: Path
    plot: Path

    def best(self, metric: str | None = None) -> dict[str, Any]:
        """The row with the highest ``metric`` (default: the table's first clinical score)."""
        metric = metric or table_columns(self.rows)["main"]
        scored = [r for r in self.rows if isinstance(r.get(metric), (int, float)) and r[metric] == r[metric]]
        if not scored:
            raise ConfigError("grid", f"no cell has a {metric} score")
        return max(scored, key=lambda r: r[metric])


def run_grid(space: str, axes: list[tuple[str, tuple[Any, ...]]], data, out: str | Path,
             config: GridConfig = GridConfig(), base: dict[str, Any] | None = None, mapper=map,
             log: Callable[[str], None] = lambda m: None, title: str = "") -> GridResult:
    """Train every cell of ``axes`` over ``space`` on ``data`` (a SPEC or a dataset); write ``grid.csv``,
    ``grid.png`` and ``grid.txt`` into ``out`` and return the rows."""
    from n2nas.data.spec import load_dataset
    from search_spaces import get_space

    if not axes:
        raise ConfigError("--grid", "a grid needs at least one axis (LABEL=[v1,v2,...]) or a --preset")
    space_def = get_space(space)
    base = dict(base or {})
    if base.pop("__fixed_pipeline__", None) == "hannun":
        from search_spaces.references import hannun_sample

        base = {**hannun_sample(space_def), **base}
    cells = plan_cells(space_def, axes, base)
    dataset = load_dataset(data) if isinstance(data, str) else data
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "grid.json", json.dumps({
        "space": space, "axes": [[label, list(v)] for label, v in axes], "config": asdict(config),
        "data": getattr(dataset, "source", str(data)), "base": cells[0] if cells else {}}, indent=1, default=str))
    labels = [label for label, _ in axes]
    tasks = [CellTask(i, space, sample, {k: sample[k] for k in labels}, str(out / "cells" / f"{i:03d}"), config)
             for i, sample in enumerate(cells)]
    rows = list(mapper(functools.partial(run_cell, dataset=dataset, log=log), tasks))
    source = getattr(dataset, "source", str(data))
    synthetic = " (SYNTHETIC data)" if getattr(dataset, "synthetic", False) else ""
    heading = (f"{title}\n" if title else "") + f"grid over {space} on {source}{synthetic}"
    table = format_table(rows, labels)
    atomic_write_text(out / "grid.txt", heading + "\n" + table + "\n")
    csv_path = write_csv(rows, out / "grid.csv")
    plot = write_plot(rows, labels, out / "grid.png", heading)
    return GridResult(rows, heading + "\n" + table, csv_path, plot)


def merge_axes(preset_axes, given) -> list[tuple[str, tuple[Any, ...]]]:
    """A preset's axes with each ``given`` axis of the same label replacing it; other given axes are added."""
    replaced = dict(given or [])
    return [(label, replaced.pop(label, values)) for label, values in preset_axes] + list(replaced.items())
