"""Read + preprocess every record cold, then again from the on-disk cache (warm); records/s and ratios.

Usage: python benchmarks/data_loading.py [DIR] [--workers 1] [--repeats 3]

Cold = read every WFDB file (validated) + preprocess + write the cache entry. Warm = the same preparation
answered by the cache (memory-mapped arrays, no file read or filter run), median of ``--repeats``. The raw read is
also shown on its own, since a search reads the raw files once per process and then only meets the cache.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2nas.data.cache import prepare  # noqa: E402
from n2nas.data.preprocess import PreprocessConfig  # noqa: E402
from n2nas.data.readers import load_physionet2017  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2017"
CONFIGS = {
    "standard (300 Hz, 0.5-40 Hz band-pass, record z)": PreprocessConfig.standard(),
    "150 Hz + median baseline + band-pass, robust": PreprocessConfig(fs=150, baseline="median", normalise="robust"),
    "DiagnoseNET (baseline, band-pass, R peaks)": PreprocessConfig.diagnosenet(),
}


def main() -> None:
    """Print the cold/warm table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--workers", type=int, default=1, help="preprocessing processes on a cold run")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    t = time.perf_counter()
    dataset = load_physionet2017(args.folder)
    read_s = time.perf_counter() - t
    n = len(dataset)
    print(f"{n} records from {args.folder}; raw WFDB read + validation: {read_s:.1f} s ({n / read_s:.0f} records/s)")
    print(f"{'preprocessing':<52} {'cold rec/s':>10} {'warm rec/s':>11} {'warm/cold':>10} {'warm/read':>10}")
    with tempfile.TemporaryDirectory() as cache_dir:
        for name, cfg in CONFIGS.items():
            t = time.perf_counter()
            prepare(dataset, cfg, cache_dir=cache_dir, workers=args.workers)
            cold = read_s + time.perf_counter() - t
            warm = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                prepared = prepare(dataset, cfg, cache_dir=cache_dir)
                prepared.data.sum()  # touch every byte so the memory map is really read
                warm.append(time.perf_counter() - t)
            w = statistics.median(warm)
            print(f"{name:<52} {n / cold:>10.0f} {n / w:>11.0f} {cold / w:>9.0f}x {read_s / w:>9.0f}x")


if __name__ == "__main__":
    main()
