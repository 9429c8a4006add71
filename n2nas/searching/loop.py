"""A search: its configuration and named presets, its result, and ``search``, which runs its phases in order."""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from n2nas.data.record import Dataset
from n2nas.errors import ConfigError
from n2nas.measure import MeasureConfig
from n2nas.measure.reward import RewardConfig
from n2nas.measure.run import preflight
from n2nas.runners import RunnerConfig
from n2nas.runners.local import SharedTrainingConfig
from n2nas.searching import phases
from n2nas.searching.family import FamilyConfig
from n2nas.searching.budget import budget_clock
from n2nas.searching.finals import FinalsConfig
from n2nas.searching.screen import ScreenConfig
from n2nas.space import Pipeline


# the deployment budgets of the train-once presets, FLOPs per 30 s record: a wearable, a phone, a fifth of the
# hand-designed residual net (1.63 GFLOPs), and the residual net's regime
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
        budget_clock(self.clock)
        if self.clock == "cpu" and self.runner.backend != "local":
            raise ConfigError("--clock", f"a CPU-time budget counts this process only; the {self.runner.backend} "
                                         "backend trains on other processes (use --clock wall)")

    @staticmethod
    def demo() -> "SearchConfig":
        """The bundled 300-record sample, 4 minutes on 2 CPU cores, space ecg-cpu. The README's first command."""
        return SearchConfig(space="ecg-cpu", budget_minutes=4.0, budget_epochs=None, reward_records=None,
                            derive_children=8, controller_steps=2, children_per_step=4)

    @staticmethod
    def cpu_hour() -> "SearchConfig":
        """A full PhysioNet-2017-sized data set (~6000 records), 60 minutes on 2 CPU cores, space ecg-cpu, no FLOPs
        term in the reward. ``ecg-cpu`` holds the decisions weight sharing can score in that time. 18 preprocessing candidates are screened (18 -> 6 -> 2). Accuracy
        first: no FLOPs term (FLOPs are still measured and reported; ``--flops-weight`` adds one). With -0.02 the
        controller settled on width 0.5 (4x cheaper than the plain CNN) and the retrained result lost 0.085 CinC
        F1 to it: at this size the cheapest nets are not yet accurate enough to trade.

        Two controller updates of one child each per pass over the data, as ENAS updates on one child a step, and
        one warm-up child scored every fourth warm-up epoch. The screen keeps the best sixth of its first rung
        (18 -> 3) and stops there. Why: with 2 x 3 children and 18 -> 6 -> 2, a 60-min search spent 15.9% on
        scoring and 18.6% on the screen, and shared-weight training got 51.8%; the screen's extra rung only
        re-ranked the same winner (its 3-pass and 9-pass orders agreed), and each child costs 1.6 s to score."""
        return SearchConfig(space="ecg-cpu", budget_minutes=60.0, budget_epochs=None, reward_records=400,
                            controller_steps=2, children_per_step=1, warmup_scoring_every=4, derive_children=12,
                            derive_top=4, screen=ScreenConfig(candidates=18, keep=1 / 6),
                            reward=RewardConfig.accuracy_only())

    @staticmethod
    def twelve_lead() -> "SearchConfig":
        """12-lead, multi-label records of PTB-XL size (~1,600 records at 100 Hz), 30 minutes on 2 CPU cores, space
        ecg-12lead-resnet, reward macro AUROC. ``ecg-12lead-resnet``: the lead set (12, 6, 3, 2, 1), rate, filter,
        normalisation and crop length are screened on own weights (9 candidates, best third goes on; the first
        candidate is the space's default preprocessing, 12 leads, 100 Hz, no filter, per-record z-score, 3 s
        crops; it trains in every rung, and the best other candidate meets it in a last, 9-pass rung), then
        kernels, skips and width of an 8-layer residual layout (64-64-128-128 channels, widths 0.5-1.5) are searched
        through shared weights. The finals train the best
        three derived children and the default network, resnet-12's, from scratch; the default network trains in
        both rungs, so a searched child is returned only when it beats it after nine passes. The reward is macro
        AUROC over the whole validation split (``reward_records=None``); accuracy first, no FLOPs term
        (``--flops-weight`` adds one to trade leads and size against AUROC).

        Why (docs/12-lead.md, PTB-XL fold 9, one 30-min search and 15-min retrain per run): in runs 1, 3 and 4 the
        ``ecg-12lead`` space (6 layers, 32-64-128 channels) gave 0.925, 0.926 and 0.918 macro AUROC against
        resnet-12's 0.932, 0.929 and 0.936, and its best nets stayed ~0.01 validation AUROC below resnet-12's
        layout after the retrain, with or without augmentation. ``ecg-12lead-resnet`` holds that layout, but its two
        earlier searches lost on the screen and the finals' first rung: they kept 6 or 2 leads and 10 s crops
        after one to three passes (0.912 and 0.915); in a third, 12 leads lost to 3 leads by 0.005 after three
        passes and won by 0.004 after nine. So the default preprocessing and the default network are now carried
        to the last rung of both (``ScreenConfig.default_candidate``, ``FinalsConfig.carry_reference``),
        and 10 s crops are gone from the space (a wall-capped retrain of them ran 7 epochs where 3 s crops ran
        19). Strong augmentation is pinned (``ECGSpaceConfig.twelve_lead``): it lifted the validation AUROC of
        resnet-12 from 0.920 to 0.924 and of run 4's pick from 0.906 to 0.914, but the finals cannot judge it. Run 5,
        this preset: the finals returned resnet-12's own network (0.913 after nine passes, the best derived child
        0.910), which with the augmentation scored 0.926 against resnet-12's 0.936 in the benchmark's single
        retrain and 0.941 against 0.936 over three retrain seeds (+0.005 [-0.003, +0.016]; 0.939 against 0.937 after the
        retrain schedule fix). Run 8, after class weighting began to reach the multi-label loss (BCE ``pos_weight``):
        the search returned resnet-12's network again and scored 0.936 / 0.945 / 0.941 over three retrain seeds,
        against resnet-12's 0.926 / 0.939 / 0.934 with the same recipe and 0.935 / 0.939 / 0.938 without class
        weighting: at least both for every seed, by a margin inside the noise (+0.003 [-0.007, +0.016] on the seed
        mean). Dev retrains on folds 1-8 found no searchable training setting, kernel, skip pattern or width that
        beat resnet-12's defaults by more than the seed-to-seed spread."""
        return SearchConfig(space="ecg-12lead-resnet", budget_minutes=30.0, budget_epochs=None, reward_records=None,
                            controller_steps=2, children_per_step=1, warmup_scoring_every=4, derive_children=12,
                            derive_top=4, screen=ScreenConfig(candidates=9, keep=1 / 3, default_candidate=True),
                            finals=FinalsConfig(carry_reference=True), reward=RewardConfig.accuracy_only())

    @staticmethod
    def cpu_3h() -> "SearchConfig":
        """Train once, deploy many: a full PhysioNet-2017-sized data set, 3 hours on 2 CPU cores, space ecg-res, a
        family of four members (0.05, 0.1, 0.33 and 1 GFLOP per 30 s record). The residual supernet trains with
        the sandwich rule (largest, smallest and two random children a step, in-place distillation), screen
        included (12 -> 4 -> 1 preprocessing candidates, each training ecg-res's default net alone on its own
        weights); each member is then searched under its FLOPs limit on the shared weights alone (32 children,
        the best 4 rescored on the whole validation split) and written with inherited, BatchNorm-recalibrated
        weights. The 180 minutes hold everything: the family's time is reserved from the measured cost of
        scoring a child, as the derive phase's is. Why 32: on 900 records and a machine at load 8-10, 48 children a member
        took 7 and 18 minutes (0.05 and 0.33 GFLOP targets). No finals: the shared weights rank the children
        (``--finals 2`` trains the two best from scratch to decide ``best_pipeline.json``)."""
        return SearchConfig(space="ecg-res", budget_minutes=180.0, budget_epochs=None, reward_records=400,
                            controller_steps=2, children_per_step=2, warmup_scoring_every=4, derive_children=12,
                            derive_top=4, screen=ScreenConfig(candidates=12, keep=1 / 3),
                            finals=FinalsConfig(children=0, reference=False),
                            family=FamilyConfig(flops_targets=FAMILY_TARGETS, children=32),
                            reward=RewardConfig.accuracy_only())

    @staticmethod
    def gpu() -> "SearchConfig":
        """A full data set on one GPU, 60 minutes, space ecg-res with the same four-member family as cpu-3h. The
        GPU trains the sandwich rule's four children a step fast enough to score 8 children per controller update;
        the finals train the 3 best and ecg-res's default net from scratch."""
        return SearchConfig(space="ecg-res", budget_minutes=60.0, budget_epochs=None, reward_records=None,
                            controller_steps=4, children_per_step=8, derive_children=24, derive_top=6, top_k=10,
                            family=FamilyConfig(flops_targets=FAMILY_TARGETS, children=96, children_per_step=8),
                            device="cuda")

    @staticmethod
    def ehr_cpu() -> "SearchConfig":
        """A clinical table such as diabetes130:DIR (~80k encounters x ~850 sparse features), 20 minutes on 2 CPU
        cores, space ehr-mlp-small. ``ehr-mlp-small`` (2-8 layers x 16-512 units; activation pinned to relu, lr,
        batch and dropout to the space's defaults, dropout then varied in the finals), reward macro AUROC on the
        whole validation split (no FLOPs term: these MLPs cost 0.03-4 MFLOPs a row). No preprocessing screen (an
        EHR space has no preprocessing tokens).

        Why (docs/ehr.md, measured on diabetes130 training/validation patients): with macro F1 and 3-pass finals
        the searches returned a 2 x 256 *linear* MLP (test macro AUROC 0.854, grid's 2 x 512 relu 0.864). Trained
        alone, the linear net's validation AUROC was 0.839 after 3 passes and peaked at 0.855, while 2 x 512 relu
        was level at pass 3 (0.840) and still climbing at pass 10 (0.874): finals of 5 passes, the best three
        then trained to 15, rank closer to the retrain. AUROC differences are small, so the capacity tie is
        0.005, not the F1-sized 0.02. The shared weights ranked every linear child above every relu
        one (so no relu net reached the finals) but, with activation pinned, ranked 2 x 512 and 2 x 256 relu
        first, as standalone training does: activation is pinned like the other tokens they cannot score.
        Dropout, which the shared weights cannot score either, is judged by the finals instead (``vary``: the
        best finalist is also trained with dropout 0 and 0.5): trained alone for 30 epochs (lr decayed over
        them), 2 x 512 relu reached validation AUROC 0.878 with dropout 0.5 against 0.876 with 0.2, but
        2 x 256 only 0.861 with 0.5, so the better dropout depends on the width the search picks. In the
        benchmark's 20-min search the finals picked 2 x 512 with dropout 0.5 (0.854 after 15 passes, 0.2: 0.851);
        on the test patients it scored 0.858 macro AUROC against 0.861 for dropout 0.2 (and 0.864 for the grid's
        early-stopped cell): the loss is on rare chapters that the 5 % validation split barely holds
        (docs/ehr.md).

        Retrain its pick for 30 epochs (``n2nas retrain ... --epochs 30``: lr decayed over the steps, stopped
        after 8 epochs without a better validation score): 2 x 512 relu then peaked at epoch 19-26, while a
        4-min wall cap stopped it after 10 epochs at validation AUROC 0.857. Add ``--class-weight 0.5`` (loss
        weighted by the square root of the balanced class weights): on a 17 % validation split 2 x 512 relu reached
        0.863 with it against 0.858 without (1: 0.850), a gain that comes from the rarest chapter alone
        (docs/ehr.md)."""
        return SearchConfig(space="ehr-mlp-small", budget_minutes=20.0, budget_epochs=None, reward_records=None,
                            controller_steps=2, children_per_step=4, derive_children=12, derive_top=4,
                            screen=ScreenConfig.off(), reward=RewardConfig.accuracy_only(),
                            shared=SharedTrainingConfig(reward_metric="macro_auroc"),
                            finals=FinalsConfig(passes=5.0, survivors=3, growth=3.0, capacity_tie=0.005,
                                                vary="dropout"),
                            fixed={"activation": "relu"}, retrain_options=("--epochs", "30", "--class-weight", "0.5"))

    @staticmethod
    def named(name: str) -> "SearchConfig":
        """The preset called ``name`` (a key of :data:`SEARCH_PRESETS`; ``thorough`` is gpu's old name)."""
        name = "gpu" if name == "thorough" else name
        if name not in SEARCH_PRESETS:
            raise ConfigError("--preset", f"unknown preset {name!r} (known: {', '.join(SEARCH_PRESETS)})")
        return SEARCH_PRESETS[name]()


def _no_budget() -> SearchConfig:
    """No time budget: 10 epochs of the space ecg-small."""
    return SearchConfig()


# --preset name -> SearchConfig; the CLI's choices and help (each preset's first docstring line) read it
SEARCH_PRESETS = {"demo": SearchConfig.demo, "cpu-hour": SearchConfig.cpu_hour, "cpu-3h": SearchConfig.cpu_3h,
                  "12-lead": SearchConfig.twelve_lead, "gpu": SearchConfig.gpu, "ehr-cpu": SearchConfig.ehr_cpu, "default": _no_budget}


def preset_summary(name: str) -> str:
    """The first sentence of a preset's docstring: what it searches and for how long."""
    text = " ".join((SEARCH_PRESETS[name].__doc__ or name).split())
    first = text.split(". ")[0].rstrip(".")
    return first[:1].lower() + first[1:]


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
    started = budget_clock(config.clock)()  # the budget counts from here: reading and preparing data included
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
