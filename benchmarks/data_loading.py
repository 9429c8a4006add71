"""Read + preprocess every record cold, then again from the on-disk cache (warm); seconds, records/s and ratios.

Usage: python benchmarks/data_loading.py [DIR] [--workers 2] [--repeats 3] [--space ecg-small]

Cold = preprocess + write the cache entry into a fresh cache folder (the raw WFDB read, done once per process,
is shown on its own line and added to the single-pipeline rows' records/s as before). Warm = the same
preparation answered by the cache (memory-mapped arrays, no file read or filter run; every byte touched),
median of ``--repeats``. The last row prepares every preprocessing variant the space can sample
(fs x filter x normalise x R peaks for beat windows) with :func:`n2nas.data.cache.prepare_variants`, as a
search does before its first step; its cold time excludes the raw read.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2nas.data.cache import prepare, prepare_variants  # noqa: E402
from n2nas.data.preprocess import PreprocessConfig  # noqa: E402
from n2nas.data.readers import load_physionet2017  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2017"
CONFIGS = {
    "standard (300 Hz, 0.5-40 Hz band-pass, record z)": PreprocessConfig.standard(),
    "150 Hz + median baseline + band-pass, robust": PreprocessConfig(fs=150, baseline="median", normalise="robust"),
    "DiagnoseNET (baseline, band-pass, R peaks)": PreprocessConfig.diagnosenet(),
}


def space_variants(name: str) -> list[PreprocessConfig]:
    """Every distinct ``PreprocessConfig`` a search space's preprocessing tokens can produce."""
    from search_spaces import get_space

    space_def = get_space(name)
    labels = [d.label for d in space_def.space.flat if getattr(d, "kind", "") == "preprocessing"]
    return list(dict.fromkeys(space_def.preprocess_config(s) for s in space_def.space.grid(labels)))


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished worker processes."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _warm(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for prepared in fn():
            prepared.data.sum()  # touch every byte so the memory map is really read
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    """Print the cold/warm table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--workers", type=int, default=1, help="preprocessing processes on a cold run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--space", default="ecg-small", help="search space whose every variant the last row prepares")
    args = ap.parse_args()
    t = time.perf_counter()
    dataset = load_physionet2017(args.folder)
    read_s = time.perf_counter() - t
    n = len(dataset)
    print(f"{n} records from {args.folder}; raw WFDB read + validation: {read_s:.1f} s ({n / read_s:.0f} records/s)")
    print(f"{'preprocessing':<52} {'cold s':>7} {'warm s':>7} {'cold rec/s':>10} {'warm rec/s':>11} "
          f"{'warm/cold':>10} {'warm/read':>10}")
    for name, cfg in CONFIGS.items():
        with tempfile.TemporaryDirectory() as cache_dir:
            t = time.perf_counter()
            prepare(dataset, cfg, cache_dir=cache_dir, workers=args.workers)
            cold = read_s + time.perf_counter() - t
            w = _warm(lambda: [prepare(dataset, cfg, cache_dir=cache_dir)], args.repeats)
        print(f"{name:<52} {cold:>7.1f} {w:>7.2f} {n / cold:>10.0f} {n / w:>11.0f} {cold / w:>9.0f}x "
              f"{read_s / w:>9.0f}x")
    configs = space_variants(args.space)
    with tempfile.TemporaryDirectory() as cache_dir:
        lines: list[str] = []
        load, cpu, t = os.getloadavg()[0], _cpu_s(), time.perf_counter()
        prepare_variants(dataset, configs, cache_dir, args.workers, progress=lambda d, k, label: lines.append(
            f"  {time.perf_counter() - t:6.1f} s {d}/{k} {label}"))
        cold, cpu = time.perf_counter() - t, _cpu_s() - cpu
        w = _warm(lambda: {id(p.data): p for p in prepare_variants(dataset, configs, cache_dir).values()}.values(),
                  args.repeats)
    name = f"every variant of {args.space} ({len(configs)} configs)"
    print(f"{name:<52} {cold:>7.1f} {w:>7.2f} {n / cold:>10.0f} {n / w:>11.0f} {cold / w:>9.0f}x "
          f"{read_s / w:>9.0f}x")
    print(f"cold, without the raw read, {args.workers} worker(s): {cold:.1f} s wall, {cpu:.1f} CPU s (this process "
          f"+ workers); 1-min load average {load:.1f} at the start on {os.cpu_count()} cores. Progress as reported:")
    print("\n".join(lines))


if __name__ == "__main__":
    exit_on_error(main, "data_loading.py")
