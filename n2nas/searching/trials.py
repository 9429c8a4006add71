"""``trials.jsonl``: one JSON object per scored child, appended atomically, safe to resume.

A line is written with a single ``write`` on an ``O_APPEND`` descriptor and fsynced, so a killed search leaves
every finished line intact; a torn last line (kill during the write) is cut off when the log is reopened.
On resume the search replays from its checkpoint and takes the result of any trial already in the log instead
of scoring it again, so no line is lost and none is duplicated.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: failed or undefined numbers are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class TrialLog:
    """Append-only trial records keyed by ``step``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        if self.path.exists():
            raw = self.path.read_bytes()
            keep = raw.rfind(b"\n") + 1
            if keep < len(raw):
                with open(self.path, "r+b") as fh:
                    fh.truncate(keep)
            self.records = [json.loads(line) for line in raw[:keep].decode().splitlines() if line.strip()]
        self._by_step = {r["step"]: r for r in self.records}

    def __len__(self) -> int:
        return len(self.records)

    def get(self, step: int) -> dict[str, Any] | None:
        """The record already logged for ``step``, if any."""
        return self._by_step.get(step)

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write one record durably; a step already present is not written twice."""
        if record["step"] in self._by_step:
            return self._by_step[record["step"]]
        record = _clean(record)
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records.append(record)
        self._by_step[record["step"]] = record
        return record


def nan_rewards(rewards: list[float | None]) -> list[float]:
    """Rewards for a controller: a failed child's None becomes NaN (controllers skip it)."""
    return [math.nan if r is None else float(r) for r in rewards]
