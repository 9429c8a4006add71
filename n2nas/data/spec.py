"""Data SPEC strings (``sample``, ``physionet2017:DIR``, ``cinc2021:DIR``, ``wfdb:DIR,LABELS.csv``,
``synthetic-ecg[:PRESET]``, ``ehr:DIR[,START:END]``, ``synthetic-ehr[:N[,F]]``, ``diabetes130:DIR[,TARGET]``,
``table:FILE.csv,target=COL[,id=COL]``) turned into datasets
(ECG specs give a record :class:`Dataset`, EHR specs an ``EHRDataset`` of sparse feature rows)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from n2nas.data.record import Dataset
from n2nas.data.readers import load_cinc2021, load_physionet2017, load_wfdb_csv
from n2nas.errors import ConfigError

SPEC_HELP = ("sample | physionet2017:DIR | cinc2021:DIR (also 2020) | wfdb:DIR,LABELS.csv | "
             "synthetic-ecg[:small|medium] | ehr:DIR[,START:END] | synthetic-ehr[:N[,F]] | "
             "diabetes130:DIR[,chapter|readmitted|readmitted30] | "
             "table:FILE.csv,target=COL[,id=COL][,drop=A;B][,codes=A;B]")


def bundled_sample_dir() -> Path:
    """Folder of the 300 PhysioNet 2017 records shipped with the package (ODC-BY, see its README)."""
    return Path(str(resources.files("n2nas.data") / "sample"))


def default_cache_root() -> Path:
    """Where derived data (synthetic folders, preprocessed arrays) live unless told otherwise."""
    import os

    return Path(os.environ.get("N2NAS_CACHE", Path.home() / ".cache" / "n2nas"))


def load_dataset(spec: str, *, skip_bad: bool = False, min_seconds: float = 1.0,
                 cache_root: Path | None = None) -> Dataset:
    """Read the data a SPEC names; bad files raise DataError unless ``skip_bad``."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    opts = {"skip_bad": skip_bad, "min_seconds": min_seconds}
    if kind == "sample" and not arg:
        return load_physionet2017(bundled_sample_dir(), **opts)
    if kind == "physionet2017" and arg:
        return load_physionet2017(arg, **opts)
    if kind in ("cinc2021", "cinc2020") and arg:
        return load_cinc2021(arg, **opts)
    if kind == "wfdb" and arg.count(",") == 1:
        folder, labels = arg.split(",")
        return load_wfdb_csv(folder, labels, **opts)
    if kind == "synthetic-ecg":
        from n2nas.data.synthetic import SyntheticECGConfig, synthetic_ecg_folder
        from n2nas.presets import presets_of

        preset, known = arg or "small", presets_of(SyntheticECGConfig)
        if preset not in known:
            raise ConfigError("data spec", f"unknown synthetic-ecg preset {preset!r} ({', '.join(known)})")
        folder = synthetic_ecg_folder(cache_root or default_cache_root(), preset=preset)
        return load_physionet2017(folder, **opts)
    if kind == "ehr" and arg:
        from n2nas.data.ehr_matrix import load_ehr, parse_columns

        folder, _, cols = arg.partition(",")
        return load_ehr(folder, parse_columns(cols) if cols else None)
    if kind == "synthetic-ehr":
        from n2nas.data.synthetic_ehr import parse_synthetic_spec, synthetic_ehr

        return synthetic_ehr(parse_synthetic_spec(arg))
    if kind == "diabetes130" and arg:
        from n2nas.data.table import load_diabetes130

        folder, _, target = arg.partition(",")
        return load_diabetes130(folder, target.strip() or "chapter", cache_root)
    if kind == "table" and arg:
        from n2nas.data.table import load_csv_table

        return load_csv_table(arg, cache_root)
    raise ConfigError("data spec", f"cannot understand data spec {spec!r}; expected {SPEC_HELP}")
