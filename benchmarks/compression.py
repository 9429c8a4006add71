"""Compression of one ECG pipeline on real PhysioNet 2017 records: float vs magnitude pruning (50%, 70%,
adaptive) vs quantization-aware int8, plus post-training static and dynamic int8, and data-parallel
retraining with 1 vs 2 workers.

Usage: python benchmarks/compression.py [DIR] [--records 2000] [--epochs 8] [--pipeline best_pipeline.json]

Protocol: a seeded stratified subset of ``--records`` records of DIR is split once into dev (80%) and held-out
test (20%). Every variant is retrained from scratch on dev with the same seed and epochs (early stopping on an
internal validation split of dev) and scored once on test: CinC 2017 F1, macro AUROC, parameters (non-zero
for pruned models), measured sparsity, on-disk ``model.pt`` size, CPU latency per 30 s record (all its
multi-crop windows in one batch, one thread, min and median of 50 warm runs; preprocessing excluded, it is the same
for every variant) and training time. The post-training rows reuse the float model (training time =
the float model's plus the seconds of calibration/conversion).

DDP: the same pipeline without batch norm or dropout (``norm="none"``) retrained for ``--ddp-epochs`` with 1
and 2 gloo workers on the dev records; prints the largest weight difference, both validation F1s, and the
speed-up of the training loop (spawning excluded) and of the whole call (spawning included).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from n2nas.models.folder import load_model_dir, load_pipeline  # noqa: E402
from n2nas.compress.prune import PruneConfig, sparsity_report, state_bytes  # noqa: E402
from n2nas.compress.quantize import QATConfig, is_quantized, quantize_dynamic, quantize_static  # noqa: E402
from n2nas.data.spec import load_dataset  # noqa: E402
from n2nas.data.splits import stratified_split  # noqa: E402
from n2nas.models.folder import NORM_FILE, stats_from_json  # noqa: E402
from n2nas.models.retrain import RetrainConfig, retrain  # noqa: E402
from n2nas.models.evaluate import evaluate  # noqa: E402
from n2nas.space import Pipeline  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from search_spaces import get_space  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2017"


def default_pipeline() -> Pipeline:
    """A 6-layer ecg-small pipeline (conv7, residual sums on layers 3 and 5, 32-64-128 channels, 100 Hz,
    10 s crops, class weighting): the stand-in when no search result is given."""
    space = get_space("ecg-small").space
    sample = {**space.default_sample(), "fs": 100, "filter": "bandpass", "normalise": "record_z",
              "window": "crop:10", "augment": "none", "width": 1.0, "lr": 1e-3, "batch_size": 64, "dropout": 0.2,
              "weight_decay": 1e-4, "class_weighting": True}
    for i in range(6):
        sample.update({f"layer{i}/op": "conv7", f"layer{i}/dilation": 1, f"layer{i}/activation": "relu",
                       f"layer{i}/skip": tuple(1 if (i % 2 == 1 and i >= 3 and j == i - 2) else 0 for j in range(i))})
    space.validate(sample)
    return Pipeline("ecg-small", sample)


def record_latency_ms(model, model_dir: Path, test) -> tuple[float, float]:
    """(min, median) CPU ms over 50 warm runs on all windows of the test record closest to 30 s (one thread)."""
    from n2nas.data.cache import prepare
    from n2nas.data.spec import default_cache_root
    from n2nas.data.windows import eval_windows

    pipeline = load_pipeline(model_dir / "pipeline.json")
    space_def = get_space(pipeline.space)
    durations = [r.signal.shape[-1] / r.fs for r in test.records]
    i = int(np.argmin(np.abs(np.array(durations) - 30.0)))
    prepared = prepare(test.subset([test.ids[i]]), space_def.preprocess_config(pipeline.sample),
                       cache_dir=default_cache_root() / "prepared")
    shape = eval_windows(prepared, 0, space_def.window_config(pipeline.sample)).shape
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.zeros(tuple(shape))
    try:
        with torch.inference_mode():
            for _ in range(10):
                model(x)
            times = []
            for _ in range(50):
                t0 = time.perf_counter()
                model(x)
                times.append(1000 * (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(threads)
    # the minimum is the machine's cost without other users' interference; the median shows what it was
    return float(np.min(times)), float(np.median(times))


def row(name: str, model, model_dir: Path, test, train_s: float, file_bytes: int) -> dict:
    """One table row: held-out scores, size, sparsity, latency, training time."""
    scores = evaluate(model_dir, test, device="cpu", model=model)
    int8 = is_quantized(model)
    return {"variant": name, "cinc2017_f1": scores["cinc2017_f1"], "macro_auroc": scores["macro_auroc"],
            "nonzero_params": count_weights(model), "sparsity": None if int8 else sparsity_report(model)["sparsity"],
            "file_bytes": file_bytes, "train_s": train_s,
            **dict(zip(("latency_ms_min", "latency_ms_median"), record_latency_ms(model, model_dir, test)))}


def count_weights(model) -> int:
    """Non-zero weights and biases (float tensors), or all of them (int8 tensors and packed (w, b) pairs)."""
    n = 0
    for key, v in model.state_dict().items():
        if isinstance(v, tuple):  # packed int8 linear parameters
            n += sum(t.numel() for t in v if isinstance(t, torch.Tensor))
        elif isinstance(v, torch.Tensor) and key.endswith(("weight", "bias")):
            n += v.numel() if v.is_quantized else int((v != 0).sum())
    return n


def ddp_check(pipeline: Pipeline, dev, work: Path, epochs: int, seed: int) -> dict:
    """1 vs 2 gloo workers on the BN-free, dropout-free pipeline: weight difference, scores and speed-up."""
    sample = {**pipeline.sample, "dropout": 0.0, "augment": "none"}
    bn_free = Pipeline(pipeline.space, sample)
    out = {}
    for workers in (1, 2):
        cfg = RetrainConfig(epochs=epochs, patience=epochs, seed=seed, device="cpu", norm="none", workers=workers)
        t0 = time.monotonic()
        summary = retrain(bn_free, dev, work / f"ddp{workers}", cfg, log=lambda m: print(m, file=sys.stderr))
        out[workers] = {"wall_s": time.monotonic() - t0, "train_s": summary["train_seconds"],
                        "val_f1": summary["validation"]["cinc2017_f1"]}
    w1 = torch.load(work / "ddp1" / "model.pt", weights_only=True)
    w2 = torch.load(work / "ddp2" / "model.pt", weights_only=True)
    diff = max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1)
    return {"epochs": epochs, "max_weight_diff": diff, **{f"{k}_workers": v for k, v in out.items()},
            "speedup_train": out[1]["train_s"] / out[2]["train_s"], "speedup_wall": out[1]["wall_s"] / out[2]["wall_s"]}


def main() -> None:
    """Retrain every variant, print the table (and a JSON copy)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--records", type=int, default=2000, help="stratified subset size (0 = every record)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--ddp-epochs", type=int, default=2)
    ap.add_argument("--pipeline", default=None, help="best_pipeline.json of a search (default: see --help)")
    ap.add_argument("--only", default="float,prune50,prune70,adaptive,qat,ddp")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep model folders here")
    args = ap.parse_args()
    only = set(args.only.split(","))
    t_start = time.monotonic()
    data = load_dataset(f"physionet2017:{args.folder}")
    if args.records and args.records < len(data):
        data = data.subset(list(stratified_split(data, val=args.records / len(data), seed=args.seed).val))
    split = stratified_split(data, val=0.2, seed=args.seed)
    dev, test = data.subset(list(split.train)), data.subset(list(split.val))
    pipeline = load_pipeline(args.pipeline) if args.pipeline else default_pipeline()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="n2nas-compress-"))
    base = RetrainConfig(epochs=args.epochs, patience=args.epochs, seed=args.seed, device="cpu")
    variants = {"float": base, "prune50": dataclasses.replace(base, prune=PruneConfig.fixed(0.5)),
                "prune70": dataclasses.replace(base, prune=PruneConfig.fixed(0.7)),
                "adaptive": dataclasses.replace(base, prune=PruneConfig.adaptive(0.7)),
                "qat": dataclasses.replace(base, qat=QATConfig.default())}
    rows = []
    log = (lambda m: print(m, file=sys.stderr))
    for name, cfg in variants.items():
        if name not in only:
            continue
        t0 = time.monotonic()
        retrain(pipeline, dev, work / name, cfg, log=log)
        train_s = time.monotonic() - t0
        _, model = load_model_dir(work / name)
        rows.append(row(name, model, work / name, test, train_s, (work / name / "model.pt").stat().st_size))
        print(json.dumps(rows[-1]), file=sys.stderr)
        if name == "float":
            for ptq in ("ptq-static", "ptq-dynamic"):
                t0 = time.monotonic()
                if ptq == "ptq-static":
                    calib = _calibration_batches(work / name, dev, args.seed)
                    qmodel = quantize_static(model, calib)
                else:
                    qmodel = quantize_dynamic(model)
                extra_s = time.monotonic() - t0
                rows.append(row(ptq, qmodel, work / name, test, train_s + extra_s, state_bytes(qmodel.state_dict())))
                print(json.dumps(rows[-1]), file=sys.stderr)
    ddp = ddp_check(pipeline, dev, work, args.ddp_epochs, args.seed) if "ddp" in only else None
    print(f"{len(dev)} dev / {len(test)} held-out test records of {args.folder}; {args.epochs} epochs; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; total {(time.monotonic() - t_start) / 60:.1f} "
          f"min; models in {work}")
    print(f"{'variant':<12} {'CinC F1':>7} {'AUROC':>6} {'params!=0':>9} {'sparsity':>8} {'file KB':>8} "
          f"{'ms/rec min':>10} {'median':>7} {'train s':>8}")
    for r in rows:
        sp = "-" if r["sparsity"] is None else f"{r['sparsity']:.3f}"
        print(f"{r['variant']:<12} {r['cinc2017_f1']:>7.3f} {r['macro_auroc']:>6.3f} {r['nonzero_params']:>9} "
              f"{sp:>8} {r['file_bytes'] / 1024:>8.1f} {r['latency_ms_min']:>10.2f} {r['latency_ms_median']:>7.2f} "
              f"{r['train_s']:>8.1f}")
    if ddp:
        print(f"DDP ({ddp['epochs']} epochs, no BN/dropout): max |w1 - w2| = {ddp['max_weight_diff']:.2e}; val F1 "
              f"{ddp['1_workers']['val_f1']:.4f} vs {ddp['2_workers']['val_f1']:.4f}; training loop "
              f"{ddp['1_workers']['train_s']:.1f} s vs {ddp['2_workers']['train_s']:.1f} s (x{ddp['speedup_train']:.2f});"
              f" whole call {ddp['1_workers']['wall_s']:.1f} s vs {ddp['2_workers']['wall_s']:.1f} s "
              f"(x{ddp['speedup_wall']:.2f})")
    print(json.dumps({"pipeline": pipeline.sample, "rows": rows, "ddp": ddp}))


def _calibration_batches(model_dir: Path, dev, seed: int, n_batches: int = 8) -> list[torch.Tensor]:
    """Random training windows of dev records (batches of 32) for post-training static calibration."""
    from n2nas.data.cache import prepare
    from n2nas.data.spec import default_cache_root
    from n2nas.train.primitives import PipelineData, targets_of

    pipeline = load_pipeline(model_dir / "pipeline.json")
    space_def = get_space(pipeline.space)
    prepared = prepare(dev, space_def.preprocess_config(pipeline.sample), cache_dir=default_cache_root() / "prepared")
    stats = stats_from_json(json.loads((model_dir / NORM_FILE).read_text()))
    data = PipelineData(prepared, targets_of(dev), space_def.window_config(pipeline.sample), stats)
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(data.train_batch(rng.choice(len(dev), 32, replace=False), rng)[0])
            for _ in range(n_batches)]


if __name__ == "__main__":
    exit_on_error(main, "compression.py")
