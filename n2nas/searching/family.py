"""Train once, deploy many: members of a cost/accuracy family cut from one trained supernet. This module owns the
family: its folder and file (:data:`FAMILY_FILE`, read by :func:`read_family`, written by :func:`add_to_family`) and
the member loop that the search's family phase and ``n2nas derive`` share (:func:`add_members`).

For each FLOPs target the controller searches again under that hard limit, scoring children with the shared
weights only (no training), the best few are rescored on the whole validation split, and the winner becomes a
model folder with *inherited* weights: the standalone child gets the supernet's weights for its path and its
BatchNorm statistics recalibrated on training records (Once-for-All, BigNAS), optionally fine-tuned from there.
``n2nas evaluate`` and ``n2nas export`` take such a folder as it is; its ``pipeline.json`` can still be retrained.
Once the members are written, each target names the member it deploys (:func:`choose_deployed`): the cheapest
member that fits it and is within the noise of the best that fits.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from n2nas.errors import ConfigError, DataError
from n2nas.searching.member_search import check_targets, cost_decisions, search_member
from n2nas.searching.noise import (cheapest_within_noise, compare, load_predictions, record_comparison,
                                   save_predictions)
from n2nas.space import Pipeline
from n2nas.storage import atomic_write_text

FAMILY_DIR = "family"
FAMILY_FILE = "family.json"


@dataclass(frozen=True)
class FamilyConfig:
    """The members a search cuts from its supernet: one per FLOPs target (per 30 s record, every multi-crop
    window); ``children`` scored with shared weights on the reward set per target, ``children_per_step`` per
    controller update, the best ``rescored`` of them rescored on the whole validation split. ``finetune_epochs`` > 0
    then fine-tunes each member from its inherited weights with the one trainer (that many passes over the training
    records, lr ``finetune_lr`` times the member's own, decayed to zero), as Once-for-All's published members are;
    the inherited folder is kept beside it. Each member gets an equal share of the time the family has left, of
    which ``finetune_share`` goes to its fine-tune and the rest to its search. ``floor``: a member's candidates
    (the children rescored on the whole validation split, and members carried from smaller targets) cost at least
    this share of its target, so that a member uses its budget even where the shared weights cannot tell a small
    child from a large one (children below it still guide the controller)."""

    flops_targets: tuple[float, ...] = ()
    children: int = 48
    children_per_step: int = 4
    rescored: int = 4
    finetune_epochs: int = 0
    finetune_lr: float = 0.3
    finetune_share: float = 0.5
    floor: float = 0.0
    grow: float = 0.5  # share of the drawn children under half the target that are grown up to it

    def __post_init__(self):
        if any(not t > 0 for t in self.flops_targets):
            raise ConfigError("--flops-targets", f"every target must be positive, got {list(self.flops_targets)}")
        if self.children < 1 or self.children_per_step < 1 or self.rescored < 1:
            raise ConfigError("family", "children, children_per_step and rescored must be at least 1")
        if self.finetune_epochs < 0 or not self.finetune_lr > 0:
            raise ConfigError("--finetune-epochs", "must be >= 0 (and the fine-tune lr scale positive)")
        if not 0 < self.finetune_share < 1:
            raise ConfigError("family.finetune_share", f"must lie strictly between 0 and 1, got {self.finetune_share}")
        if not 0 <= self.floor < 1:
            raise ConfigError("family.floor", f"must lie in [0, 1), got {self.floor}")
        if not 0 <= self.grow <= 1:
            raise ConfigError("family.grow", f"must lie in [0, 1], got {self.grow}")


def member_name(target: float) -> str:
    """The folder name of the member for ``target`` FLOPs, e.g. ``flops-0.33G``."""
    return f"flops-{target / 1e9:g}G"


def family_seconds(family: FamilyConfig, full_child_s: float | None, reward_share: float,
                   pass_s: float | None = None) -> float:
    """Estimated seconds of a search's family phase: per target, ``children`` scorings on the reward set
    (``reward_share`` of the validation split) and, on the whole split, the ``rescored`` best, the members
    carried from smaller targets, and the written member's own evaluation (0 until a scoring has been timed);
    with a fine-tune, its epochs at ``pass_s`` seconds per pass over the training records plus a scoring each."""
    if not family.flops_targets or not full_child_s:
        return 0.0
    targets = len(family.flops_targets)
    whole = targets * (family.rescored + 1) + targets * (targets - 1) / 2
    tune = targets * family.finetune_epochs * ((pass_s or 0.0) + full_child_s)
    return full_child_s * (targets * family.children * reward_share + whole) + tune


def check_family(config, space, costs) -> None:
    """Refuse, before a run folder exists, a family that cannot be cut: a target below the space's smallest child,
    a space with no free architecture decision (its children share nothing to cut members from), or a fine-tune
    that alone would take more epochs than the whole search (``config`` is the search's ``SearchConfig``)."""
    family = config.family
    if not family.flops_targets:
        return
    if not [d for d in cost_decisions(space) if getattr(d, "kind", "") == "architecture"]:
        raise ConfigError("--flops-targets", f"space {config.space} has no free architecture decision here: there "
                                             "is no weight-shared family to cut members from")
    check_targets(family.flops_targets, space, costs, config.space)
    tuning = family.finetune_epochs * len(family.flops_targets)
    if config.budget_epochs is not None and tuning > config.budget_epochs:
        raise ConfigError("--finetune-epochs", f"{family.finetune_epochs} epochs for each of "
                                               f"{len(family.flops_targets)} members is more than the search's "
                                               f"whole budget of {config.budget_epochs} epochs")


def add_members(state, targets: Sequence[float], seeds: Sequence[int], folders: Sequence[Path],
                carried: Sequence[dict[str, Any]] = (), keep: Sequence[str] = (),
                option: str = "--flops-targets") -> list[dict[str, Any]]:
    """The member loop of the search's family phase and of ``n2nas derive``: for each target in turn, a controller
    of its own (seeded by ``seeds``) searches under it on the shared weights (:func:`search_member`; members chosen
    so far, ``carried`` first, compete again), and the winner is written to its folder (:func:`write_member`) and
    recorded in the family file. ``state`` is the search's state (``n2nas.searching.state.SearchState``); a member
    whose folder name is in ``keep`` (already written by a resumed run) is searched again but not rewritten, so the
    trial log replays. ``option`` is named when no child fits a target. Returns the entries written."""
    from controllers import make_controller

    config, chosen, written = state.config, list(carried), []
    for n, (target, seed, folder) in enumerate(zip(targets, seeds, folders)):
        # each member gets an equal share of what the budget has left, split between its search and its fine-tune
        left = state.budget.left()
        share = None if left is None else max(0.0, left) / (len(targets) - n)
        tuning = config.family.finetune_epochs > 0
        searching = 1.0 - config.family.finetune_share if tuning else 1.0
        until = None if share is None else state.budget.elapsed + share * searching
        state.progress.phase(f"family {member_name(target)}")
        controller = make_controller(config.controller, state.space.tokens, seed=seed,
                                     preset=config.controller_preset)
        with state.clock("family"):
            stats: dict[str, Any] = {}

            def pick(n: int, section=f"family {member_name(target)}") -> int | None:
                """The noise rule over the ``n`` children just rescored (the last ``n`` trial lines)."""
                steps = list(range(state.step - n, state.step))
                trials = [state.log.get(s) for s in steps]
                ok = [t for t in trials if t is not None and t["status"] == "ok" and t["reward"] is not None]
                picked = state.pick_within_noise(ok, state.ctx.val_idx, section)
                return None if picked is None else steps.index(picked["step"])

            sample = search_member(target, config.family, controller, state.space, state.costs,
                                   state.measured.reward, state.score_family, chosen, stats, pick,
                                   # a resumed run replays its logged children whatever its clock says
                                   out_of_time=lambda: (until is not None and state.log.get(state.step) is None
                                                        and state.budget.elapsed >= until))
            if sample is None:
                raise ConfigError(option, f"no child under {target:.4g} FLOPs per record was scored ok; "
                                                     "the run folder is complete without this member")
            chosen.append(sample)
            if Path(folder).name in keep:
                continue
            left = state.budget.left()
            minutes = None if share is None else max(0.05, (until + share * (1.0 - searching)
                                                             - state.budget.elapsed) / 60.0)
            entry = write_member(Path(folder), state.runner, state.space_def, state.dataset, sample,
                                 state.config.space, target, state.costs.of(sample), config.family, stats,
                                 finetune_minutes=minutes if tuning and left is not None else None,
                                 clock=config.clock, run_dir=state.run_dir)
            add_to_family(state.run_dir, entry)
            written.append(entry)
    choose_deployed(state)
    return written


def write_member(folder: Path, runner, space_def, dataset, sample: dict[str, Any], space_name: str,
                 target: float | None, cost: dict[str, Any], family: FamilyConfig = FamilyConfig(),
                 stats: dict[str, Any] | None = None, finetune_minutes: float | None = None,
                 clock: str = "wall", run_dir: Path | None = None) -> dict[str, Any]:
    """Cut ``sample``'s standalone child from the runner's supernet (inherited weights, BatchNorm recalibrated on
    the runner's calibration records), score it on the whole validation split and write it as a model folder; with
    ``family.finetune_epochs``, that folder is ``<folder>-inherited`` and the child fine-tuned from it is written to
    ``folder``, within ``finetune_minutes`` on ``clock`` when given. With ``run_dir``, the final model's validation
    probabilities are kept there (under the entry's ``predictions`` key) for :func:`choose_deployed`. Returns the
    member's family-file entry (with ``stats``, how its search went, as ``search``)."""
    import dataclasses

    import torch

    from n2nas.models.folder import NORM_FILE, data_card, stats_json, write_model_folder
    from n2nas.train.numerics import zero_denormals
    from n2nas.train.primitives import recalibrate_batchnorm

    local = runner.local_replica()
    n_in = space_def.input_size(dataset)
    with torch.random.fork_rng(devices=[]):  # building the child must not move the search's dropout stream
        child = space_def.build_child(sample, n_in, len(dataset.classes)).to(local.device)
    space_def.copy_shared_weights(local.supernet, child, sample)
    # a member is deployed as cut: on a runtime that computes denormals its forward pass was 3x slower (run 4)
    zeroed = zero_denormals(child)
    recalibrate_batchnorm(child, child, local.calibration_batches(sample))
    data = local.ctx.pipeline_data(space_def.preprocess_config(sample), space_def.window_config(sample))
    metric_name, validation, score, probs = _validated(child, local, data, dataset)
    pipeline = Pipeline(space_name, sample, data_card(dataset, n_in),
                        {"metric_name": metric_name, "metric": score, "params": cost["params"],
                         "flops_per_record": cost["flops_per_record"]})
    entry = {"name": folder.name, "flops_target": target, "flops_per_record": cost["flops_per_record"],
             "params": cost["params"], "metric_name": metric_name, "val_metric": score, "weights": "inherited",
             "model_dir": str(folder), **({"search": stats} if stats is not None else {}),
             **({"predictions": f"member-{folder.name}"} if run_dir is not None else {})}
    files = {NORM_FILE: stats_json(data.stats)}
    metrics = {"metric": metric_name, "validation": validation, "flops_target": target, "batchnorm": "recalibrated",
               "denormals_zeroed": zeroed}
    if not family.finetune_epochs:
        write_model_folder(folder, pipeline, child.cpu(), weights="inherited", metrics=metrics, files=files)
        if run_dir is not None:
            save_predictions(run_dir, entry["predictions"], probs)
        return entry
    inherited = folder.with_name(folder.name + "-inherited")
    write_model_folder(inherited, pipeline, child.cpu(), weights="inherited", metrics=metrics, files=files)
    tuned, history = _fine_tune(child.to(local.device), local, data, dataset, sample, space_def, family, metric_name,
                                finetune_minutes, clock)
    metric_name, validation, tuned_score, probs = _validated(tuned, local, data, dataset)
    if run_dir is not None:
        save_predictions(run_dir, entry["predictions"], probs)
    weights = f"fine-tuned ({len(history)} epochs)"
    pipeline = dataclasses.replace(pipeline, scores={**pipeline.scores, "metric": tuned_score})
    write_model_folder(folder, pipeline, tuned.cpu(), weights=weights, files={**files, "history.json": history},
                       metrics={**metrics, "validation": validation, "inherited_val_metric": score})
    return {**entry, "val_metric": tuned_score, "inherited_val_metric": score, "weights": weights,
            "inherited_dir": str(inherited)}


def _validated(model, local, data, dataset) -> tuple[str, dict[str, Any], float, np.ndarray]:
    """The runner's metric name, every validation score, the metric, and the per-record probabilities of ``model``
    on the whole validation split."""
    from n2nas.metrics import reward_metric_name
    from n2nas.train.primitives import predict_records, scores_of

    model.eval()
    name = reward_metric_name(local.config.reward_metric, dataset.classes, dataset.multilabel)
    records = np.asarray(local.ctx.val_idx)
    probs = predict_records(model, data, records, dataset.multilabel, local.device)
    score, validation = scores_of(probs, data.targets[records], name, dataset.classes, dataset.multilabel)
    return name, validation, score, probs


def _fine_tune(child, local, data, dataset, sample: dict[str, Any], space_def, family: FamilyConfig,
               metric_name: str, minutes: float | None = None, clock: str = "wall"):
    """``child`` trained on from its inherited weights by the one trainer on the search's training records, the
    epoch best on validation kept; returns it and its history."""
    import copy

    import torch

    from n2nas.train.primitives import WindowBatches, loss_weights
    from n2nas.train.trainer import FitConfig, fit

    settings = space_def.training_settings(sample)
    ctx, device = local.ctx, local.device
    weight = loss_weights(ctx.targets[ctx.train_idx], dataset.multilabel, device,
                          float(settings.get("class_weighting", False)))
    recipe = FitConfig(epochs=family.finetune_epochs, lr=family.finetune_lr * settings["lr"],
                       batch_size=settings["batch_size"], weight_decay=settings["weight_decay"], ema_decay=0.998,
                       metric=metric_name, max_minutes=minutes, clock=clock)
    with torch.random.fork_rng(devices=[]):  # the search's own dropout stream goes on as if nothing was trained
        fitted = fit(lambda: copy.deepcopy(child), WindowBatches(data, ctx.train_idx, space_def.augment_config(sample),
                                                                 device),
                     lambda model: _validated(model, local, data, dataset)[2], recipe, device=device,
                     class_weight=weight, multilabel=dataset.multilabel)
    return fitted.model, fitted.history


def read_family(run_dir: str | Path) -> list[dict[str, Any]]:
    """The member entries of ``RUN/family/family.json``, cheapest first (none when the run has no family).

    An entry holds ``name``, ``flops_target``, ``flops_per_record``, ``params``, ``metric_name``, ``val_metric``,
    ``weights`` (``"inherited"`` or ``"fine-tuned (N epochs)"``) and ``model_dir`` (the member's model folder);
    a fine-tuned member also names ``inherited_dir``, its folder before the fine-tune."""
    path = Path(run_dir) / FAMILY_DIR / FAMILY_FILE
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text())["members"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(path, f"not a family file ({err})") from None


def read_deployed(run_dir: str | Path) -> dict[str, str]:
    """``{member name: name of the member to deploy for its target}`` as :func:`choose_deployed` last wrote it
    (empty when it has not run since the last member was added)."""
    path = Path(run_dir) / FAMILY_DIR / FAMILY_FILE
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("deploy", {}))
    except (ValueError, TypeError, AttributeError) as err:
        raise DataError(path, f"not a family file ({err})") from None


def _write_family(run_dir: Path, members: list[dict[str, Any]], deploy: dict[str, str] | None = None) -> None:
    path = run_dir / FAMILY_DIR / FAMILY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"members": members, **({"deploy": deploy} if deploy else {})}, indent=2))


def add_to_family(run_dir: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Record ``entry`` in ``RUN/family/family.json`` (replacing a member of the same name), written atomically.
    The deploy choice is dropped until :func:`choose_deployed` runs again, since a new member can change it."""
    members = read_family(run_dir)
    members = [m for m in members if m["name"] != entry["name"]] + [entry]
    members.sort(key=lambda m: m["flops_per_record"])
    _write_family(run_dir, members)
    return members


def choose_deployed(state) -> dict[str, str]:
    """Write the family's deploy choice (:func:`deploy_choices`) over the final weights' kept validation
    probabilities into the family file, each comparison into ``comparisons.json`` under ``deploy NAME``; returns
    it. ``state`` is the search's state. Members without kept probabilities (written by an older version) deploy
    themselves."""
    members = read_family(state.run_dir)
    if not members:
        return {}
    y, score = state.noise_inputs(state.ctx.val_idx)
    kept = {m["name"]: p for m in members if m.get("predictions")
            and (p := load_predictions(state.run_dir, m["predictions"])) is not None and len(p) == len(y)}
    deploy, compared = deploy_choices(members, kept, y, score, state.config.seed)
    for name, rows in compared.items():
        record_comparison(state.run_dir, f"deploy {name}", rows, deploy[name])
    _write_family(state.run_dir, members, deploy)
    return deploy


def deploy_choices(members: Sequence[dict[str, Any]], probs: dict[str, np.ndarray], y: np.ndarray, score,
                   seed: int = 0) -> tuple[dict[str, str], dict[str, list]]:
    """For each member's target, the member to deploy: of every member that fits the target (its own and the
    cheaper ones, ``probs`` their validation probabilities by name), the cheapest whose score is not below the
    best's by more than the noise (:func:`n2nas.searching.noise.cheapest_within_noise`). A larger member that its
    training could not lift above a cheaper one is then not what its budget deploys. Returns ``({member: deployed
    member}, {member: its comparison})``; a member compared with nothing deploys itself."""
    deploy, compared = {}, {}
    for member in members:
        fits = [m for m in members if m["name"] in probs and m["flops_per_record"] <= member["flops_target"]]
        if member["name"] not in probs or len(fits) < 2:
            deploy[member["name"]] = member["name"]
            continue
        rows = compare([{"key": m["name"], "flops": m["flops_per_record"], "params": m["params"]} for m in fits],
                       [probs[m["name"]] for m in fits], y, score, seed=seed)
        deploy[member["name"]], compared[member["name"]] = cheapest_within_noise(rows).key, rows
    return deploy, compared


def family_samples(run_dir: Path) -> list[dict[str, Any]]:
    """The samples of the members already in ``RUN/family/family.json`` (none when there is no family yet)."""
    from n2nas.models.folder import load_pipeline

    folders = [Path(m["model_dir"]) for m in read_family(run_dir)]
    return [load_pipeline(f / "pipeline.json").sample for f in folders if (f / "pipeline.json").exists()]
