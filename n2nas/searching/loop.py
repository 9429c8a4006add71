"""A search: its configuration and named presets, its result, and ``search``, which runs its phases in order."""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from n2nas.data.record import Dataset
from n2nas.errors import ConfigError
from n2nas.measure import MeasureConfig
from n2nas.measure.reward import RewardConfig
from n2nas.measure.run_measurement import preflight
from n2nas.presets import preset
from n2nas.runners import RunnerConfig
from n2nas.runners.shared import SharedTrainingConfig
from n2nas.searching import phases
from n2nas.searching.family import FamilyConfig
from n2nas.train.lr_budget import clock_of
from n2nas.searching.finals import FinalsConfig
from n2nas.searching.screen import ScreenConfig
from n2nas.space import Pipeline


# the deployment budgets of the train-once presets, FLOPs per 30 s record: a wearable, a phone, a small
# residual net, and the hand-designed residual net's regime (hannun: 8.4 GFLOPs at 300 Hz, 10 s crops)
FAMILY_TARGETS = (0.05e9, 0.1e9, 0.33e9, 1.0e9)


@dataclass(frozen=True)
class SearchConfig:
    """What to search and how long. Budget: whichever of ``budget_minutes`` / ``budget_epochs`` ends first.

    Stage one (``screen``) picks the preprocessing by successive halving, each candidate training the space's
    default architecture on its own weights (:mod:`n2nas.searching.screen`); the winner's weights start the
    weight-shared stage. An epoch is one pass of shared-weight training over the training records (ENAS), one sampled child per
    batch, then ``controller_steps`` controller updates of ``children_per_step`` children each, scored on a
    fixed, stratified reward set of ``reward_records`` validation records. The first ``warmup`` share of the
    budget trains the supernet with uniformly sampled children (SPOS) before the controller acts. The derive
    phase rescores the ``derive_top`` best controller-phase children and fresh controller samples, up to
    ``derive_children`` in all, on the whole validation split; the ``finals`` train the best of them (and the
    default architecture) from scratch for a few passes and the best trained one is the result
    (:mod:`n2nas.searching.finals`).
    """

    space: str = "ecg-small"
    controller: str = "enas"
    controller_preset: str | None = None  # the controller's named configuration; None = its first (see CONTROLLERS)
    seed: int = 0
    budget_minutes: float | None = None
    budget_epochs: int | None = 10
    val_fraction: float = 0.2
    warmup: float = 0.3             # share of the budget (minutes or epochs) trained with uniform children
    warmup_scoring_every: int = 1   # one uniform child scored every this many warm-up epochs (a progress sign)
    shared_steps: int | None = None  # shared steps per epoch; None = one pass over the training records
    controller_steps: int = 2       # controller updates per epoch
    children_per_step: int = 5      # children scored per controller update
    reward_records: int | None = 400  # fixed stratified reward set drawn from validation; None = all of it
    derive_children: int = 12       # children scored on the full validation split at the end
    derive_top: int = 4             # of which the best controller-phase children (the rest sampled afresh)
    top_k: int = 5
    screen: ScreenConfig = ScreenConfig()      # stage one: preprocessing screened on own weights
    finals: FinalsConfig = FinalsConfig()      # the best derived children trained from scratch to pick the result
    family: FamilyConfig = FamilyConfig()      # members cut from the trained supernet, one per FLOPs target
    shared: SharedTrainingConfig = SharedTrainingConfig()
    runner: RunnerConfig = RunnerConfig()      # backend (local | ray | mpi), workers, sync/async (n2nas.runners)
    reward: RewardConfig = RewardConfig()      # metric x cost terms, hard limits (see n2nas.measure.reward)
    measure: MeasureConfig = MeasureConfig()   # latency timing, energy estimate, power sampling
    device: str = "auto"
    # what budget_minutes counts: "wall" time, or "cpu" time of the search's process (a shared machine's other
    # jobs then do not change what the budget buys; the local backend only, workers elsewhere are not counted)
    clock: str = "wall"
    data_workers: int = 0           # processes preparing data; 0 = one per CPU core
    fixed: dict[str, Any] = field(default_factory=dict)  # labels pinned to one value (not searched)
    # Training tokens the supernet cannot score (it trains with its own optimizer) are pinned to the space's
    # defaults unless ``fixed`` names them: searching them through shared weights would only add noise.
    pin_unscored: bool = True
    # ``n2nas retrain`` options this preset's retrain was measured with; the summary's next command carries them,
    # so a user who runs it retrains the way the benchmark did.
    retrain_options: tuple[str, ...] = ()

    def __post_init__(self):
        if self.warmup_scoring_every < 1:
            raise ConfigError("warmup_scoring_every", f"must be >= 1, got {self.warmup_scoring_every}")
        clock_of(self.clock)
        if self.clock == "cpu" and self.runner.backend != "local":
            raise ConfigError("--clock", f"a CPU-time budget counts this process only; the {self.runner.backend} "
                                         "backend trains on other processes (use --clock wall)")

    @staticmethod
    @preset()
    def demo() -> "SearchConfig":
        """The bundled 300-record sample, 4 minutes on 2 CPU cores, space ecg-cpu. The README's first command."""
        return SearchConfig(space="ecg-cpu", budget_minutes=4.0, budget_epochs=None, reward_records=None,
                            derive_children=8, controller_steps=2, children_per_step=4)

    @staticmethod
    @preset()
    def cpu_hour() -> "SearchConfig":
        """A full PhysioNet-2017-sized data set (~6000 records), 60 minutes on 2 CPU cores, space ecg-cpu, no FLOPs
        term in the reward.

        ``ecg-cpu`` holds the decisions weight sharing can score in that time. Accuracy first: FLOPs are measured
        and reported but not rewarded (``--flops-weight`` adds a term). 18 preprocessing candidates are screened
        and the best sixth trained once more (18 -> 3); two controller updates of one child each per pass over the
        data, as ENAS updates on one child a step, and one warm-up child scored every fourth warm-up epoch, so that
        shared-weight training gets most of the hour. The measurements behind these choices: docs/search.md#cpu-hour.
        """
        return SearchConfig(space="ecg-cpu", budget_minutes=60.0, budget_epochs=None, reward_records=400,
                            controller_steps=2, children_per_step=1, warmup_scoring_every=4, derive_children=12,
                            derive_top=4, screen=ScreenConfig(candidates=18, keep=1 / 6),
                            reward=RewardConfig.accuracy_only())

    @staticmethod
    @preset("cpu-hour-family")
    def cpu_hour_family() -> "SearchConfig":
        """Train once, deploy many on a full single-lead set (~6000 records), 60 minutes on 2 CPU cores: space
        ecg-res with plain-cnn's input (100 Hz, no filter, record z-score, one 30 s window), members at 0.05 and
        0.33 GFLOPs per 30 s record, each fine-tuned from its inherited weights for most of its share of the hour.

        The representation is pinned, not screened: trained alone for 20 passes, the inputs tried scored alike, so
        the hour is better spent on the members, and one 30 s window costs less per record than overlapping 10 s
        crops. The supernet trains with
        the uniform rule (it ranked standalone-trained children better than the sandwich did, and its steps are
        cheaper). Each member's candidates cost at least half its target (children are grown towards it): shared
        weights trained for half an hour cannot tell a 10 from a 300 MFLOP child, and the cheapest-within-noise
        rule would then return the smallest, which stays weak however long it trains. Each member then gets 80 %
        of its share of the family's time to fine-tune at its own lr, decayed to zero. No finals: the space's
        default network, the reference, is scored beside the derived children. Measurements:
        docs/ecg-res.md#the-cpu-hour-family-preset.
        """
        return SearchConfig(space="ecg-res", budget_minutes=60.0, budget_epochs=None, reward_records=400,
                            controller_steps=2, children_per_step=2, warmup_scoring_every=4, derive_children=8,
                            derive_top=4, screen=ScreenConfig.off(), finals=FinalsConfig(children=0, reference=False),
                            family=FamilyConfig(flops_targets=(0.05e9, 0.33e9), children=24, finetune_epochs=30,
                                                finetune_lr=1.0, finetune_share=0.8, floor=0.5),
                            shared=SharedTrainingConfig.uniform(),
                            fixed={"fs": 100, "filter": "none", "normalise": "record_z", "window": "crop:30"},
                            reward=RewardConfig.accuracy_only())

    @staticmethod
    @preset()
    def cpu_3h() -> "SearchConfig":
        """Train once, deploy many: a full PhysioNet-2017-sized data set, 3 hours on 2 CPU cores, space ecg-res, a
        family of three members (0.05, 0.1 and 0.33 GFLOP per 30 s record).

        ``cpu-hour-family``'s recipe given three hours and one more target: plain-cnn's input pinned, the uniform
        rule, each member's candidates at least half its target, and each member fine-tuned from its inherited
        weights (up to 30 epochs, or 80 % of its share of the family's time). Each target then deploys the
        cheapest member within the noise of the best that fits it, so a large member its share cannot train is
        not shipped for its budget. No 1 GFLOP member: the space's largest child costs 0.38 GFLOPs on this input.
        Why not the screened, sandwich-trained, inherited members it used to write (about 0.1 CinC F1 below
        plain-cnn at 60 minutes): docs/ecg-res.md#the-cpu-3h-preset.
        """
        hour = SearchConfig.cpu_hour_family()
        return replace(hour, budget_minutes=180.0,
                       family=replace(hour.family, flops_targets=tuple(t for t in FAMILY_TARGETS if t < 1e9)))

    @staticmethod
    @preset("12-lead")
    def twelve_lead() -> "SearchConfig":
        """12-lead, multi-label records of PTB-XL size (~1,600 records at 100 Hz), 30 minutes on 2 CPU cores, space
        ecg-12lead-resnet, reward macro AUROC.

        The lead set, rate, filter, normalisation and crop length are screened on own weights (9 candidates, the
        best third goes on), then kernels, skips and width of resnet-12's 8-layer residual layout are searched
        through shared weights; reward macro AUROC over the whole validation split, no FLOPs term
        (``--flops-weight`` adds one). The space's default preprocessing and resnet-12's network are carried to the
        last rung of the screen and of the finals (``ScreenConfig.default_candidate``,
        ``FinalsConfig.carry_reference``), so a searched pipeline is returned only when it beats them after nine
        passes: one to three passes could not tell them apart. Why, run by run: docs/12-lead.md#the-12-lead-preset.
        """
        return SearchConfig(space="ecg-12lead-resnet", budget_minutes=30.0, budget_epochs=None, reward_records=None,
                            controller_steps=2, children_per_step=1, warmup_scoring_every=4, derive_children=12,
                            derive_top=4, screen=ScreenConfig(candidates=9, keep=1 / 3, default_candidate=True),
                            finals=FinalsConfig(carry_reference=True), reward=RewardConfig.accuracy_only())

    @staticmethod
    @preset()
    def gpu() -> "SearchConfig":
        """A full data set on one GPU, 60 minutes, space ecg-res with a four-member family (0.05, 0.1, 0.33 and 1
        GFLOP per 30 s record; the screen may choose a rate that holds the largest). The GPU trains the sandwich
        rule's four children a step fast enough to score 8 children per controller update; the finals train the 3
        best and ecg-res's default net from scratch."""
        return SearchConfig(space="ecg-res", budget_minutes=60.0, budget_epochs=None, reward_records=None,
                            controller_steps=4, children_per_step=8, derive_children=24, derive_top=6, top_k=10,
                            family=FamilyConfig(flops_targets=FAMILY_TARGETS, children=96, children_per_step=8),
                            device="cuda")

    @staticmethod
    @preset()
    def ehr_cpu() -> "SearchConfig":
        """A clinical table such as diabetes130:DIR (~80k encounters x ~850 sparse features), 20 minutes on 2 CPU
        cores, space ehr-mlp-small.

        Layers (2-8) and units (16-512) are searched; activation is pinned to relu and lr, batch and dropout to the
        space's defaults, because the shared weights cannot rank them as training alone does. The reward is macro
        AUROC on the whole validation split (no FLOPs term: these MLPs are cheap), there is no preprocessing screen
        (an EHR space has no preprocessing tokens), and the finals, not the shared weights, decide: 5 passes, the
        best three on to 15, an AUROC-sized capacity tie, and dropout varied for the best finalist. Retrain its
        pick with ``--epochs 30 --class-weight 0.5`` (the summary's next command carries them). The measurements
        behind each choice: docs/ehr.md#the-ehr-cpu-preset.
        """
        return SearchConfig(space="ehr-mlp-small", budget_minutes=20.0, budget_epochs=None, reward_records=None,
                            controller_steps=2, children_per_step=4, derive_children=12, derive_top=4,
                            screen=ScreenConfig.off(), reward=RewardConfig.accuracy_only(),
                            shared=SharedTrainingConfig(reward_metric="macro_auroc"),
                            finals=FinalsConfig(passes=5.0, survivors=3, growth=3.0,
                                                vary="dropout"),
                            fixed={"activation": "relu"}, retrain_options=("--epochs", "30", "--class-weight", "0.5"))

    @staticmethod
    @preset("default")
    def no_budget() -> "SearchConfig":
        """No time budget: 10 epochs of the space ecg-small."""
        return SearchConfig()


@dataclass
class SearchResult:
    """What a search leaves: the run folder, every trial, and the ranked derived pipelines."""

    run_dir: Path
    trials: list[dict[str, Any]]
    pipelines: list[Pipeline]

    def best(self, k: int = 1) -> list[Pipeline]:
        """The top ``k`` pipelines by full-validation score."""
        return self.pipelines[:k]


def search(data: str | Dataset = "sample", config: SearchConfig = SearchConfig(), out: str | Path = "runs/search",
           resume: bool = False, progress: Any = False) -> SearchResult | None:
    """Run (or resume) a search and leave a complete run folder in ``out``.

    ``progress``: True shows a live display on stderr (:class:`n2nas.searching.progress.SearchProgress`), a string
    does too with that label leading each line, or pass one.
    With the MPI backend every rank calls this; rank 0 runs the search and writes the run folder, the other
    ranks serve its runner and return None.
    """
    from n2nas.train.numerics import flush_denormals

    started = clock_of(config.clock)()  # the budget counts from here: reading and preparing data included
    flush_denormals()  # shared training drives unused weights towards zero, into the slow denormal range
    if config.runner.backend == "mpi":
        from n2nas.runners.mpi import serve_if_worker

        if serve_if_worker(data):
            return None
    preflight(config)  # fail before the run folder is created
    with ExitStack() as resources:  # the power sampler and energy meters stop even when the search fails
        shown = search_progress(progress, config)
        resources.callback(shown.close)
        return _search(data, config, out, resume, shown, resources, started)


def _search(data: str | Dataset, config: SearchConfig, out: str | Path, resume: bool, progress,
            resources: ExitStack, started: float) -> SearchResult:
    """The search's phases in order (:mod:`n2nas.searching.phases`); a resumed search skips what it finished."""
    state = phases.open_search(data, config, Path(out), resume, progress, resources, started)
    phases.screen(state)                        # stage one: preprocessing on its own weights, then controllers
    while not state.budget.search_over(state.epoch):
        phases.search_epoch(state)              # warm-up, or shared training + controller updates; checkpoint
    phases.derive(state)                        # the best children rescored on the whole validation split
    phases.finals(state)                        # the best derived children trained from scratch
    phases.family(state)                        # one member per FLOPs target, cut from the shared weights
    pipelines = phases.finish(state)            # best_pipeline.json, report.png, summary.json (family included)
    return SearchResult(state.run_dir, list(state.log.records), pipelines)


def search_progress(progress: Any, config: SearchConfig):
    """The live display: ``progress`` itself when it is one, else a (possibly silent) ``SearchProgress``; a
    string is the label that starts its lines."""
    if hasattr(progress, "phase"):
        return progress
    from n2nas.searching.progress import SearchProgress

    budget_s = None if config.budget_minutes is None else 60.0 * config.budget_minutes
    label = progress if isinstance(progress, str) else "search"
    return SearchProgress(budget_s, enabled=bool(progress), label=label)
