"""The standalone trainings benchmarks/ranking.py keeps in the project (``benchmarks/results/ranking-SPACE.jsonl``):
one JSON line per training (child, recipe, data and split hashes, seed, score, commit, date), appended atomically,
and reused only when everything that changes a training matches."""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import subprocess
from pathlib import Path


VAL_FRACTION = 0.15
# the RetrainConfig fields that change what a standalone training learns; a line is reused only when all match
RECIPE_FIELDS = ("epochs", "patience", "schedule", "plateau_patience", "plateau_factor", "ema_decay", "max_minutes",
                 "norm", "workers", "global_batch", "class_weight")


def child_key(sample: dict) -> str:
    """A child's identity: its sample as canonical JSON (sorted keys, tuples as lists)."""
    return json.dumps(sample, sort_keys=True, separators=(",", ":"))


def load_trainings(path: str | Path) -> list[dict]:
    """Every line of a standalone-trainings file; none when it does not exist. A line that does not parse (one
    torn by a kill during its write) is skipped with a note, so the training it held runs again."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"{path}:{n}: not a JSON line, skipped")
    return out


def append_training(path: str | Path, line: dict) -> None:
    """Append one line with a single ``write`` on an ``O_APPEND`` descriptor, fsynced: lines of runs killed
    or running side by side stay whole. NaN, which JSON lacks, is written as null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in line.items()}
    text = json.dumps(clean, sort_keys=True, separators=(",", ":")) + "\n"
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        text = "\n" + text  # a torn last line must not swallow this one
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def matching_children(lines: list[dict], key: dict) -> tuple[list[dict], list[tuple[dict, float, int]]]:
    """The lines whose every field of ``key`` matches, and their distinct children (sample, GFLOPs, params), first
    seen first."""
    mine = [line for line in lines if all(line.get(field) == value for field, value in key.items())]
    children = {}
    for line in mine:
        children.setdefault(child_key(line["child"]), (line["child"], line["gflops"], line["params"]))
    return mine, list(children.values())


def git_commit(root: str | Path) -> str:
    """The commit the code ran at, with ``+dirty`` when tracked files outside ``benchmarks/results`` differ from
    it; ``unknown`` outside a git checkout."""
    def git(*argv):
        return subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, check=True).stdout

    try:
        sha = git("rev-parse", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def utc_now() -> str:
    """The time of a line, UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha(lines) -> str:
    """A short hash of some strings, in order."""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def run_key(args, cfg, dataset, split, pins) -> dict:
    """What a line must match, besides its child and seed, to stand for a training this run would do (``cfg``: the
    run's standalone ``RetrainConfig``)."""
    return {"space": args.space, "pins": pins, "recipe": {f: getattr(cfg, f) for f in RECIPE_FIELDS},
            "data": {"reader": args.data.split(":")[0], "records": len(dataset.records),
                     "records_sha": sha(f"{r.id}:{','.join(r.labels)}" for r in dataset.records)},
            "split": {"seed": args.seed, "val_fraction": VAL_FRACTION, "val_sha": sha(sorted(split.val))}}
