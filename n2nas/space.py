"""Search-space declarations: Choice / Skips / Repeat decisions flattened into the token list a controller sees.

A sample is a plain ``{label: value}`` dict (values are the options themselves, skip decisions are tuples of
0/1), so it reads and round-trips as JSON. Controllers work on indices (``{label: int | tuple[int, ...]}``);
:meth:`SearchSpace.decode` / :meth:`SearchSpace.encode` convert between the two.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Literal, Union

import numpy as np

from n2nas.errors import ConfigError

Kind = Literal["preprocessing", "architecture", "training"]
KINDS: tuple[Kind, ...] = ("preprocessing", "architecture", "training")


@dataclass(frozen=True)
class Choice:
    """Pick one of ``options`` (JSON-serialisable values); ``default`` is used by fixed pipelines and grids."""

    label: str
    options: tuple[Any, ...]
    kind: Kind = "architecture"
    default: Any = None

    def __post_init__(self):
        if not self.options:
            raise ConfigError(self.label, "a choice needs at least one option")
        if self.kind not in KINDS:
            raise ConfigError(self.label, f"kind must be one of {KINDS}")


@dataclass(frozen=True)
class Skips:
    """ENAS skip connections: one on/off flag per earlier layer (``n_inputs`` of them).

    Inside a :class:`Repeat`, leave ``n_inputs`` at -1: repetition ``i`` then gets ``i`` flags, one per
    earlier repetition. Every Skips token also marks the end of a layer for the controller's attention.
    """

    label: str
    n_inputs: int = -1
    kind: Kind = "architecture"


@dataclass(frozen=True)
class Repeat:
    """``count`` copies of ``body``, labelled ``{label}{i}/{inner label}``."""

    label: str
    count: int
    body: tuple[Union[Choice, Skips], ...]


Decision = Union[Choice, Skips, Repeat]


@dataclass(frozen=True)
class Token:
    """What a controller sees of one decision: its label, kind, and either ``n_choices`` or ``n_inputs``."""

    label: str
    kind: Kind
    n_choices: int = 0
    n_inputs: int = 0
    is_skip: bool = False


def _flatten(decisions: tuple[Decision, ...]) -> list[Union[Choice, Skips]]:
    flat: list[Union[Choice, Skips]] = []
    for d in decisions:
        if isinstance(d, Repeat):
            for i in range(d.count):
                for inner in d.body:
                    name = f"{d.label}{i}/{inner.label}"
                    if isinstance(inner, Skips):
                        flat.append(replace(inner, label=name, n_inputs=i if inner.n_inputs < 0 else inner.n_inputs))
                    else:
                        flat.append(replace(inner, label=name))
        elif isinstance(d, Skips) and d.n_inputs < 0:
            raise ConfigError(d.label, "Skips outside a Repeat needs an explicit n_inputs")
        else:
            flat.append(d)
    labels = [d.label for d in flat]
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise ConfigError(dup, "label used twice in one search space")
    return flat


@dataclass(frozen=True)
class SearchSpace:
    """An ordered list of decisions. ``fixed`` pins some labels (e.g. a hand-designed pipeline); ``defaults`` gives
    the default child values its decisions' own defaults cannot express (per-layer ops, skip flags: a residual
    default child), still searched."""

    name: str
    decisions: tuple[Decision, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def flat(self) -> list[Union[Choice, Skips]]:
        """Decisions with repeats expanded, in controller order."""
        return _flatten(self.decisions)

    @property
    def tokens(self) -> tuple[Token, ...]:
        """The flat token list a controller samples (pinned labels excluded)."""
        out = []
        for d in self.flat:
            if d.label in self.fixed:
                continue
            if isinstance(d, Skips):
                out.append(Token(d.label, d.kind, n_inputs=d.n_inputs, is_skip=True))
            else:
                out.append(Token(d.label, d.kind, n_choices=len(d.options)))
        return tuple(out)

    def size(self) -> int:
        """Number of distinct samples."""
        n = 1
        for t in self.tokens:
            n *= 2 ** t.n_inputs if t.is_skip else t.n_choices
        return n

    def decode(self, indices: dict[str, Any]) -> dict[str, Any]:
        """Controller indices -> sample values (pinned labels filled in)."""
        sample = {}
        for d in self.flat:
            if d.label in self.fixed:
                sample[d.label] = self.fixed[d.label]
            elif isinstance(d, Skips):
                sample[d.label] = tuple(int(b) for b in indices[d.label])
            else:
                sample[d.label] = d.options[int(indices[d.label])]
        return sample

    def encode(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Sample values -> controller indices (pinned labels dropped)."""
        self.validate(sample)
        out = {}
        for d in self.flat:
            if d.label in self.fixed:
                continue
            out[d.label] = tuple(sample[d.label]) if isinstance(d, Skips) else index_of(d, sample[d.label])
        return out

    def validate(self, sample: dict[str, Any]) -> None:
        """Raise ConfigError naming the first label that is missing, unknown or out of range."""
        known = {d.label: d for d in self.flat}
        for label in sample:
            if label not in known:
                raise ConfigError(label, f"not a decision of search space {self.name!r}")
        for label, d in known.items():
            if label not in sample:
                raise ConfigError(label, f"missing from the sample (search space {self.name!r})")
            value = sample[label]
            if isinstance(d, Skips):
                if len(value) != d.n_inputs or any(int(b) not in (0, 1) for b in value):
                    raise ConfigError(label, f"expected {d.n_inputs} flags of 0/1, got {value!r}")
            else:
                index_of(d, value)

    def random_sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniformly random sample."""
        idx = {t.label: (tuple(int(b) for b in rng.integers(0, 2, t.n_inputs)) if t.is_skip
                         else int(rng.integers(t.n_choices))) for t in self.tokens}
        return self.decode(idx)

    def default_sample(self) -> dict[str, Any]:
        """Every choice at its default (or first option), no skips, unless ``defaults`` says otherwise; pinned
        labels as pinned."""
        idx = {}
        for d in self.flat:
            if isinstance(d, Skips):
                idx[d.label] = tuple(int(b) for b in self.defaults.get(d.label, (0,) * d.n_inputs))
            else:
                default = self.defaults.get(d.label, d.default)
                idx[d.label] = index_of(d, default) if default is not None else 0
        return {**self.decode({k: v for k, v in idx.items() if k not in self.fixed}), **self.fixed}

    def pinned(self, fixed: dict[str, Any]) -> "SearchSpace":
        """The same space with some labels fixed (checked against their options)."""
        known = {d.label: d for d in self.flat}
        for label, value in fixed.items():
            if label not in known:
                raise ConfigError(label, f"not a decision of search space {self.name!r}")
            if isinstance(known[label], Choice):
                index_of(known[label], value)
        return replace(self, fixed={**self.fixed, **fixed})

    def grid(self, labels: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every combination of the given choice labels (all choices by default), others at their defaults."""
        base = self.default_sample()
        choices = [d for d in self.flat if isinstance(d, Choice) and d.label not in self.fixed
                   and (labels is None or d.label in labels)]
        for combo in itertools.product(*(d.options for d in choices)):
            yield {**base, **{d.label: v for d, v in zip(choices, combo)}}

    def describe(self) -> str:
        """Human-readable listing of every decision and the space size."""
        lines = [f"search space {self.name!r}: {len(self.tokens)} decisions, "
                 f"size {self.size():.3e} (10^{math.log10(max(self.size(), 1)):.1f})"]
        for d in self.flat:
            pin = f"  = {self.fixed[d.label]!r} (fixed)" if d.label in self.fixed else ""
            if isinstance(d, Skips):
                lines.append(f"  [{d.kind:13s}] {d.label}: skip flags from {d.n_inputs} earlier layers{pin}")
            else:
                opts = ", ".join(map(_show, d.options))
                lines.append(f"  [{d.kind:13s}] {d.label}: {opts}{pin}")
        return "\n".join(lines)


def index_of(d: Choice, value: Any) -> int:
    """The position of ``value`` among ``d``'s options (JSON lists match tuples, ``True`` never matches ``1``);
    ConfigError naming the decision when it is not one of them."""
    for i, opt in enumerate(d.options):
        if _same(opt, value):
            return i
    raise ConfigError(d.label, f"{value!r} is not one of {', '.join(map(_show, d.options))}")


def _same(a: Any, b: Any) -> bool:
    """Equality that survives the JSON round trip (tuples come back as lists)."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b  # True must not match the option 1
    return a == b


def _show(v: Any) -> str:
    return "none" if v is None else str(v)


def sample_key(sample: dict[str, Any]) -> str:
    """A sample as a hashable key, equal for equal samples (sorted JSON; a skip tuple and its list agree)."""
    return json.dumps(sample, sort_keys=True, default=list)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Pipeline:
    """A searched pipeline: the space it belongs to, the sample, and what it was fitted for.

    ``data`` records the data facts a model needs to be rebuilt (classes, leads, multilabel);
    ``scores`` holds whatever the search measured. Saved as plain JSON.
    """

    space: str
    sample: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"space": self.space, "sample": {k: _jsonable(v) for k, v in self.sample.items()},
                "data": self.data, "scores": self.scores}

    @staticmethod
    def from_json(obj: dict[str, Any], space: SearchSpace) -> "Pipeline":
        """Rebuild from :meth:`to_json` output, restoring tuple values and validating against ``space``."""
        sample = {}
        options = {d.label: d for d in space.flat}
        for label, value in obj["sample"].items():
            d = options.get(label)
            if isinstance(d, Choice):
                value = d.options[index_of(d, value)]
            elif isinstance(d, Skips):
                value = tuple(int(b) for b in value)
            sample[label] = value
        space.validate(sample)
        return Pipeline(obj["space"], sample, dict(obj.get("data", {})), dict(obj.get("scores", {})))

    def save(self, path: str | Path) -> None:
        """Write as indented JSON."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2))
