"""The end-of-search summary: what was found, what it costs, how the search went, what to run next.

:func:`build_summary` makes a JSON-ready dict (the search writes it to ``RUN_DIR/summary.json`` with
:func:`write_summary`; ``n2nas search --json`` prints it); :func:`format_summary` makes the few lines a person
reads in five seconds.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from n2nas.searching.budget import PHASES  # phase names of ``phase_seconds``, in the order a search goes through

__all__ = ["build_summary", "describe_pipeline", "format_summary", "write_summary", "PHASES"]

def _runs(items: list[str]) -> str:
    """Run-length form: ``["a", "a", "b"]`` -> ``"a x2 b"``."""
    out: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j < len(items) and items[j] == items[i]:
            j += 1
        out.append(items[i] if j - i == 1 else f"{items[i]} x{j - i}")
        i = j
    return " ".join(out)


def describe_pipeline(sample: dict[str, Any]) -> str:
    """One line for a pipeline sample, e.g. ``100 Hz, crop:30, no filter, record_z | conv7 x6 | width 1.0,
    0 skips``; samples of other spaces (EHR MLPs) are listed as ``label value`` pairs."""
    layers = sorted({int(k[len("layer"):].split("/")[0]) for k in sample
                     if k.startswith("layer") and k.endswith("/op")})
    if not layers or "fs" not in sample:
        return ", ".join(f"{k} {_short(v)}" for k, v in sample.items())
    ops = []
    for i in layers:
        op, dilation = str(sample[f"layer{i}/op"]), sample.get(f"layer{i}/dilation", 1)
        # dilation only applies to convolutions (the space ignores it for pooling)
        ops.append(f"{op}(d{dilation})" if dilation not in (1, None) and "pool" not in op else op)
    skips = sum(int(b) for i in layers for b in (sample.get(f"layer{i}/skip") or ()))
    filt = sample.get("filter", "none")
    pre = [f"{sample['fs']} Hz", str(sample.get("window", "?")), "no filter" if filt == "none" else str(filt),
           "no normalisation" if sample.get("normalise") == "none" else str(sample.get("normalise", "?"))]
    if "leads" in sample:  # 12-lead spaces
        pre.insert(0, f"{sample['leads']} lead{'' if sample['leads'] == 1 else 's'}")
    if sample.get("augment") not in (None, "none"):
        pre.append(f"augment {sample['augment']}")
    acts = sorted({str(sample.get(f"layer{i}/activation")) for i in layers} - {"None"})
    arch = _runs(ops) + (f" ({acts[0]})" if len(acts) == 1 else "")
    return f"{', '.join(pre)} | {arch} | width {sample.get('width', '?')}, {skips} skip{'' if skips == 1 else 's'}"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _metric(trial: dict[str, Any] | None, scores: dict[str, Any]) -> tuple[str, float | None]:
    """The bare metric the search rewarded (before cost terms) and its name, as the trial line recorded them."""
    source = trial or scores
    return source.get("metric_name") or "metric", source.get("metric")


def build_summary(run_dir: str | Path, trials: list[dict], best_pipeline_json: dict, phase_seconds: dict[str, float],
                  data_spec: str, record_seconds: float = 30.0,
                  retrain_options: tuple[str, ...] = ()) -> dict[str, Any]:
    """The summary of a finished search as a JSON-ready dict.

    ``trials`` are the ``trials.jsonl`` objects, ``best_pipeline_json`` the contents of ``best_pipeline.json``,
    ``phase_seconds`` the seconds spent per phase (names in :data:`PHASES`), ``data_spec`` the SPEC to retrain
    on, ``retrain_options`` the preset's options for the printed `n2nas retrain` command. Keys ``run_dir``,
    ``trials`` (count), ``best_reward`` and ``best_pipeline`` (path) are those the search
    command has always printed.
    """
    run_dir = Path(run_dir)
    status = [t.get("status", "ok") for t in trials]
    scores = best_pipeline_json.get("scores", {})
    trial = next((t for t in trials if t.get("step") == scores.get("step")), None)
    name, metric = _metric(trial, scores)
    flops = (trial or scores).get("flops")
    latency = (trial or {}).get("latency_ms")
    elapsed = sum(phase_seconds.values()) if phase_seconds else max((t.get("elapsed_s") or 0.0 for t in trials),
                                                                     default=0.0)
    total = sum(phase_seconds.values())
    order = [p for p in PHASES if p in phase_seconds] + [p for p in phase_seconds if p not in PHASES]
    pipeline_path = run_dir / "best_pipeline.json"
    from n2nas.searching.report import best_by_choice, trial_metric

    per_leads = {str(v): {"metric": trial_metric(t), "phase": t.get("phase"), "step": t.get("step"),
                          "flops_per_record": t.get("flops_per_record"), "params": t.get("params")}
                 for v, t in best_by_choice(trials, "leads").items()}
    from n2nas.searching.family import read_deployed, read_family
    from n2nas.searching.noise import read_comparisons

    deployed = read_deployed(run_dir)
    family = [{**{k: m.get(k) for k in ("name", "flops_target", "flops_per_record", "params", "metric_name",
                                        "val_metric", "weights", "inherited_val_metric", "model_dir") if k in m},
               **({"deploy": deployed[m["name"]]} if m["name"] in deployed else {}),
               **({"note": note} if (note := _member_note(m, deployed.get(m["name"]))) else {})}
              for m in read_family(run_dir)]
    command = ["n2nas", "retrain", str(pipeline_path), "--data", data_spec,
               *retrain_options, "--out", f"models/{run_dir.resolve().name or 'best'}"]
    return {
        "run_dir": str(run_dir),
        "trials": len(trials),
        "scored": status.count("ok"),
        "failed": status.count("failed"),
        "infeasible": status.count("infeasible"),
        "best_reward": scores.get("reward"),
        "best_pipeline": str(pipeline_path),
        "best": {
            "space": best_pipeline_json.get("space"),
            "description": describe_pipeline(best_pipeline_json.get("sample", {})),
            "step": scores.get("step"), "phase": scores.get("phase"),
            "metric_name": name, "metric": metric,
            "params": (trial or scores).get("params"),
            "flops_per_input": flops,
            # the runner's own count when the trial line has one (every multi-crop window of a 30 s record)
            "flops_per_record": (trial or scores).get("flops_per_record"),
            "record_seconds": record_seconds,
            "latency_ms": latency,
        },
        "elapsed_s": round(float(elapsed), 3),
        "phase_seconds": {p: round(float(phase_seconds[p]), 3) for p in order},
        "phase_percent": {p: round(100.0 * phase_seconds[p] / total, 1) if total > 0 else 0.0 for p in order},
        "next_command": shlex.join(command),
        **({"best_per_leads": per_leads} if per_leads else {}),
        **({"family": family} if family else {}),
        **({"comparisons": comparisons} if (comparisons := read_comparisons(run_dir)) else {}),
    }


def _member_note(member: dict, deploy: str | None = None) -> str | None:
    """The summary's note on a family member: the floor its candidates were held to, why it uses under half its
    target, and which cheaper member its target deploys instead; None when there is nothing to say."""
    floor = (member.get("search") or {}).get("floor_flops")
    instead = (f"its target deploys {deploy}: this member's validation score is not above that cheaper member's by "
               f"more than the noise (comparisons.json, 'deploy {member['name']}')"
               if deploy and deploy != member["name"] else None)
    notes = [f"candidates from {floor / 1e6:.1f} MFLOPs up to the target (FamilyConfig.floor)" if floor else None,
             _under_target(member), instead]
    return "; ".join(n for n in notes if n) or None


def _under_target(member: dict) -> str | None:
    """Why a family member uses under half its FLOPs target (None when it uses more): either no dearer child was
    scored under the target, or none of the dearer ones beat it by more than the noise of the validation records."""
    target, flops = member.get("flops_target"), member.get("flops_per_record")
    if not target or flops is None or flops >= 0.5 * target:
        return None
    dearest = (member.get("search") or {}).get("dearest_scored_flops")
    used = f"uses {100 * flops / target:.0f}% of its {target / 1e9:g} GFLOP target"
    if dearest is None:
        return f"{used}: how far its search reached is not recorded"
    if dearest < 0.5 * target:
        return f"{used}: no child dearer than {dearest / 1e9:.3g} GFLOPs was scored under it"
    return (f"{used}: children up to {dearest / 1e9:.3g} GFLOPs were scored under it, and none of the dearer ones "
            "beat it by more than the noise of the validation records (the pick is the cheapest within it)")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _count(n: float | None, unit: str, scale: float, suffix: str, digits: int = 2) -> str:
    return "n/a" if n is None else f"{n / scale:.{digits}f} {suffix}{unit}"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few aligned lines: best pipeline, its score and cost, children, time, next command."""
    best = summary["best"]
    metric = "n/a" if best["metric"] is None else f"{best['metric']:.3f}"
    latency = "n/a" if best.get("latency_ms") is None else f"{best['latency_ms']:.1f} ms"
    per_record = best.get("flops_per_record")
    seconds = best.get("record_seconds")
    cost = [_count(best.get("params"), "params", 1e3, "k ", 1),
            (f"{per_record / 1e6:.2f} MFLOPs per {seconds:g} s record" if per_record is not None else
             f"{_count(best.get('flops_per_input'), 'FLOPs per input', 1e6, 'M', 2)}"),
            f"latency {latency}"]
    children = f"{summary['scored']} scored, {summary['failed']} failed"
    if summary.get("infeasible"):
        children += f", {summary['infeasible']} infeasible"
    time_line = _clock(summary.get("elapsed_s") or 0.0)
    if summary.get("budget_minutes"):  # added by the search loop when it ran on a time budget
        time_line += f" of a {_clock(60 * summary['budget_minutes'])} budget"
    if summary.get("phase_percent"):
        time_line += " - " + ", ".join(f"{p} {v:.0f}%" for p, v in summary["phase_percent"].items())
    rows = [("best", best["description"]),
            ("validation", f"{best['metric_name']} {metric} (reward {_fmt(summary.get('best_reward'))}, "
                           f"{best.get('phase') or '?'} step {best.get('step')})"),
            ("cost", ", ".join(cost)),
            ("children", f"{children} ({summary['trials']} in all)"),
            ("time", time_line)]
    if summary.get("best_per_leads"):  # 12-lead spaces: the best child of each lead set, whatever its phase
        rows.append(("per leads", ", ".join(f"{k}: {best['metric_name']} {v['metric']:.3f}"
                                            for k, v in sorted(summary["best_per_leads"].items(),
                                                               key=lambda kv: -int(kv[0])))))
    if summary.get("family"):  # one model folder per FLOPs target, inherited or fine-tuned weights
        rows.append(("family", "; ".join(f"{m['name']} {m['flops_per_record'] / 1e6:.1f} MFLOPs "
                                         f"{m['metric_name']} {m['val_metric']:.3f} ({m.get('weights', 'inherited')})"
                                         for m in summary["family"])))
        rows += [(f"  {m['name']}", m["note"]) for m in summary["family"] if m.get("note")]
    for section, comparison in (summary.get("comparisons") or {}).items():
        rows.append((section, compared_line(comparison["candidates"])))
    if summary.get("comparisons"):
        rows.append(("", "(score, minus the best's, 95% paired-bootstrap interval; * the pick: the cheapest within "
                         "the noise of the best)"))
    rows.append(("next", summary["next_command"]))
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"search finished: {summary['run_dir']}"] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


def compared_line(candidates: list[dict[str, Any]]) -> str:
    """One comparison as a line: each candidate's score and interval against the best, cheapest first, the pick
    starred, and a warning when the pick is worse and dearer than the reference."""
    parts = []
    for c in sorted(candidates, key=lambda c: (c.get("flops_per_record") or 0.0)):
        low, high = c["interval"]
        # trials are keyed by step, family members by name
        name = c.get("label") or (c["key"] if isinstance(c["key"], str) else f"step {c['key']}")
        flops = c.get("flops_per_record")
        cost = f" {flops / 1e6:.1f}M" if flops else ""
        parts.append(f"{'*' if c.get('picked') else ''}{name}{cost} {c['score']:.3f} "
                     f"{c['vs_best']:+.3f} [{low:+.3f}, {high:+.3f}]")
    line = "; ".join(parts)
    picked = next((c for c in candidates if c.get("picked")), None)
    reference = next((c for c in candidates if c.get("label") == "reference"), None)
    if picked and reference and picked is not reference and picked["score"] < reference["score"] \
            and (picked.get("flops_per_record") or 0) > (reference.get("flops_per_record") or 0):
        line += " - the pick scores below the reference and costs more"
    return line


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_summary(run_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``summary`` to ``RUN_DIR/summary.json`` atomically; returns the path."""
    from n2nas.storage import atomic_write_text

    path = Path(run_dir) / "summary.json"
    atomic_write_text(path, json.dumps(summary, indent=2))
    return path


def load_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """``RUN_DIR/summary.json`` as a dict, or None when the search did not write one."""
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None
