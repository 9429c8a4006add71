"""Real clinical tables as sparse EHR datasets: ``diabetes130:DIR[,TARGET]`` and ``table:FILE.csv,target=COL[,...]``.

``diabetes130:DIR`` reads ``DIR/diabetic_data.csv`` (UCI "Diabetes 130-US hospitals 1999-2008", 50 columns, one
row per inpatient encounter, ``?`` for missing). Targets:

- ``chapter`` (default): the ICD-9 chapter of ``diag_1``, 17 classes (:data:`CHAPTERS`); ``diag_1`` is then never a
  feature. V and E codes form the "supplementary" class; 740-779 is one class (congenital anomalies and the
  perinatal chapter, which an adult diabetic table never holds). Rows whose ``diag_1`` is ``?`` are left out.
- ``readmitted``: NO / >30 / <30; ``readmitted30``: <30 against the rest.

``readmitted`` (an outcome after discharge) and ``encounter_id`` are never features. Rows are grouped by
``patient_nbr``: :func:`n2nas.data.splits.stratified_split` keeps every encounter of a patient on one side.

``table:FILE.csv,target=COL[,id=COL][,drop=A;B][,codes=A;B]`` is the general form: ``id`` groups rows (by
patient), ``drop`` columns are never features, ``codes`` columns are ICD-9 code columns; every other column is a
count when all its values are numbers, else categorical.

Encoding is :mod:`n2nas.data.table_encoder`. The matrix returned at load time uses an encoder fitted on all rows;
every trainer refits on its own training rows with :func:`fit_on_training` before it trains, and the model folder
keeps that encoder (``encoder.json``) so that :func:`reencode` encodes new encounters the same way. Encoded
matrices are cached under ``$N2NAS_CACHE/tables`` (keyed by the file's size and mtime, the schema and the
training rows): a warm read loads arrays instead of parsing the CSV.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from n2nas.data.ehr_matrix import EHRDataset
from n2nas.data.table_encoder import (MISSING, check_encoder, encode, encoder_hash, feature_groups, fit_encoder,
                                      numeric_column)
from n2nas.errors import DataError

CACHE_FORMAT = 1
DIABETES_FILE = "diabetic_data.csv"
DIABETES_TARGETS = ("chapter", "readmitted", "readmitted30")
# (last 3-digit code of the chapter, class name): ICD-9-CM's chapters in order
_CHAPTER_BOUNDS = ((139, "infectious"), (239, "neoplasms"), (279, "endocrine"), (289, "blood"), (319, "mental"),
                   (389, "nervous"), (459, "circulatory"), (519, "respiratory"), (579, "digestive"),
                   (629, "genitourinary"), (679, "pregnancy"), (709, "skin"), (739, "musculoskeletal"),
                   (779, "congenital-perinatal"), (799, "symptoms"), (999, "injury"))
CHAPTERS = tuple(name for _, name in _CHAPTER_BOUNDS) + ("supplementary",)
DRUGS = ("metformin", "repaglinide", "nateglinide", "chlorpropamide", "glimepiride", "acetohexamide", "glipizide",
         "glyburide", "tolbutamide", "pioglitazone", "rosiglitazone", "acarbose", "miglitol", "troglitazone",
         "tolazamide", "examide", "citoglipton", "insulin", "glyburide-metformin", "glipizide-metformin",
         "glimepiride-pioglitazone", "metformin-rosiglitazone", "metformin-pioglitazone")
CATEGORICAL = ("race", "gender", "age", "weight", "admission_type_id", "discharge_disposition_id",
               "admission_source_id", "payer_code", "medical_specialty", "max_glu_serum", "A1Cresult", "change",
               "diabetesMed")
COUNTS = ("time_in_hospital", "num_lab_procedures", "num_procedures", "num_medications", "number_outpatient",
          "number_emergency", "number_inpatient", "number_diagnoses")


def icd9_chapter(code: str) -> str | None:
    """The :data:`CHAPTERS` class of an ICD-9 code, None for ``?``; ValueError for text that is not a code."""
    code = code.strip()
    if code == MISSING or not code:
        return None
    if code[0] in "VvEe":
        return "supplementary"
    number = float(code)
    for last, name in _CHAPTER_BOUNDS:
        if number < last + 1:
            return name
    raise ValueError(code)


def diabetes130_schema(target: str = "chapter") -> dict[str, Any]:
    """The encoder schema of the UCI table for one of :data:`DIABETES_TARGETS`."""
    if target not in DIABETES_TARGETS:
        raise DataError("data spec", f"unknown diabetes130 target {target!r} (known: {', '.join(DIABETES_TARGETS)})")
    codes = ("diag_2", "diag_3") if target == "chapter" else ("diag_1", "diag_2", "diag_3")
    derive = {"chapter": "icd9_chapter", "readmitted": "value", "readmitted30": "<30"}[target]
    target_col = "diag_1" if target == "chapter" else "readmitted"
    classes = {"chapter": CHAPTERS, "readmitted": ("NO", ">30", "<30"), "readmitted30": ("rest", "<30")}[target]
    return {"target": target_col, "derive": derive, "classes": list(classes), "group": "patient_nbr",
            "categorical": list(CATEGORICAL), "drugs": list(DRUGS), "codes": list(codes), "numeric": list(COUNTS)}


@dataclass(frozen=True)
class TableSource:
    """Where a table dataset came from: enough to parse it again and re-encode it (picklable, no data)."""

    path: str
    schema: dict

    def read(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, tuple]:
        """``(columns, y, groups, skipped)`` of the rows with a known target (columns include ``__line__``)."""
        return _parse(Path(self.path), self.schema)


def load_diabetes130(folder: str | Path, target: str = "chapter", cache_root: Path | None = None) -> EHRDataset:
    """``diabetes130:DIR[,TARGET]`` (see the module docstring)."""
    folder = Path(folder)
    path = folder / DIABETES_FILE if folder.is_dir() else folder
    if not path.is_file():
        raise DataError(path, "no such file (expected the UCI table diabetic_data.csv)")
    return load_table(path, diabetes130_schema(target), f"diabetes130:{folder},{target}", cache_root)


def parse_table_spec(arg: str) -> tuple[str, dict[str, Any]]:
    """``FILE.csv,target=COL[,id=COL][,drop=A;B][,codes=A;B]`` -> ``(path, partial schema)``."""
    path, *opts = [p.strip() for p in arg.split(",")]
    given = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or key not in ("target", "id", "drop", "codes") or not value:
            raise DataError("data spec", f"table:FILE.csv takes target=COL, id=COL, drop=A;B, codes=A;B; got {opt!r}")
        given[key] = value
    if not path or "target" not in given:
        raise DataError("data spec", "expected table:FILE.csv,target=COL[,id=COL][,drop=A;B][,codes=A;B]")
    return path, {"target": given["target"], "group": given.get("id"), "drop": _names(given.get("drop")),
                  "codes": _names(given.get("codes"))}


def load_csv_table(arg: str, cache_root: Path | None = None) -> EHRDataset:
    """``table:FILE.csv,target=COL,...``: column kinds inferred from the values (numbers -> counts)."""
    path, given = parse_table_spec(arg)
    path = Path(path)
    header, columns = read_csv(path)
    for key in ("target", "group"):
        if given[key] is not None and given[key] not in header:
            raise DataError(path, f"line 1: no {key if key == 'target' else 'id'} column {given[key]!r} "
                                  f"(columns: {', '.join(header)})")
    skip = {given["target"], given["group"], *given["drop"], *given["codes"]}
    numeric, categorical = [], []
    for col in header:
        if col in skip:
            continue
        values = columns[col]
        (numeric if len(values) and _all_numbers(values) else categorical).append(col)
    target = columns[given["target"]]
    classes = sorted(set(target.tolist()) - {MISSING, ""})
    schema = {"target": given["target"], "derive": "value", "classes": classes, "group": given["group"],
              "categorical": categorical, "drugs": [], "codes": given["codes"], "numeric": numeric}
    return load_table(path, schema, f"table:{arg}", cache_root)


def load_table(path: Path, schema: dict[str, Any], source: str, cache_root: Path | None = None) -> EHRDataset:
    """Parse, encode (encoder fitted on all rows: trainers refit, see :func:`fit_on_training`) and cache."""
    fingerprint = _fingerprint(path, schema)
    entry = _cache_dir(cache_root) / f"{fingerprint}-all"
    table = TableSource(str(path), schema)
    cached = _load_entry(entry, full=True)
    if cached is None:
        columns, y, groups, skipped = table.read()
        encoder = fit_encoder(columns, np.arange(len(y)), schema, tuple(schema["classes"]),
                              fitted_on="all rows (load time; trainers refit on their training rows)")
        X = encode(columns, encoder, str(path))
        _store_entry(entry, X, encoder, y=y, groups=groups, skipped=skipped)
    else:
        X, encoder, y, groups, skipped = cached
    return EHRDataset(source, X, y, tuple(schema["classes"]), False, fingerprint, feature_groups(encoder),
                      skipped=tuple(skipped), groups=groups, table=table, encoder=encoder)


def fit_on_training(dataset: EHRDataset, train_idx: np.ndarray, cache_root: Path | None = None) -> EHRDataset:
    """``dataset`` re-encoded with an encoder fitted on ``train_idx`` only (cached); other datasets unchanged."""
    if getattr(dataset, "table", None) is None:  # ECG records and plain EHR matrices carry no table
        return dataset
    train_idx = np.sort(np.asarray(train_idx, dtype=np.int64))
    rows_key = hashlib.sha256(train_idx.tobytes()).hexdigest()[:16]
    if dataset.encoder is not None and dataset.encoder.get("rows_key") == rows_key:
        return dataset  # already fitted on exactly these rows
    entry = _cache_dir(cache_root) / f"{dataset.fingerprint}-{rows_key}"
    cached = _load_entry(entry, full=False)
    if cached is None:
        columns, y, _, _ = dataset.table.read()
        if len(y) != len(dataset):
            raise DataError(dataset.table.path, "the table changed since it was read; read it again")
        encoder = {**fit_encoder(columns, train_idx, dataset.table.schema, dataset.classes), "rows_key": rows_key}
        X = encode(columns, encoder, dataset.table.path)
        _store_entry(entry, X, encoder)
    else:
        X, encoder = cached[:2]
    return dataclasses.replace(dataset, X=X, encoder=encoder, feature_groups=feature_groups(encoder))


def reencode(dataset: EHRDataset, encoder: dict[str, Any]) -> EHRDataset:
    """``dataset``'s rows under a model's ``encoder`` (its schema, vocabularies, count statistics and classes)."""
    check_encoder(encoder, "encoder.json")
    if getattr(dataset, "table", None) is None:  # ECG records and plain EHR matrices carry no table
        raise DataError(dataset.source, "the model was trained on a clinical table; give it a diabetes130: or "
                                        "table: data spec")
    table = TableSource(dataset.table.path, encoder["schema"])
    columns, y, groups, skipped = _parse(Path(table.path), {**encoder["schema"], "classes": encoder["classes"]})
    X = encode(columns, encoder, table.path)
    return EHRDataset(dataset.source, X, y, tuple(encoder["classes"]), False,
                      dataset.fingerprint + "-" + encoder_hash(encoder), feature_groups(encoder),
                      skipped=tuple(skipped), groups=groups, table=table, encoder=encoder)


def read_csv(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Header and one string array per column, plus ``__line__`` (file line of each row); ragged rows fail."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(path, f"cannot read the table ({str(err).splitlines()[0][:160]})") from None
    if not header or not any(header):
        raise DataError(path, "line 1: the table has no header")
    if len(set(header)) != len(header):
        raise DataError(path, "line 1: column names must be distinct")
    rows = [r for r in rows if r]  # blank lines
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise DataError(path, f"line {i + 2}: {len(row)} fields but the header has {len(header)} "
                                  f"(column {header[min(len(row), len(header)) - 1]!r} onwards)")
    if not rows:
        raise DataError(path, "the table has no rows")
    columns = {name: np.array(values, dtype=str) for name, values in zip(header, zip(*rows))}
    columns["__line__"] = np.arange(2, len(rows) + 2)
    return header, columns


def _parse(path: Path, schema: dict[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, tuple]:
    header, columns = read_csv(path)
    needed = [schema["target"]] + ([schema["group"]] if schema.get("group") else [])
    needed += schema["categorical"] + schema["drugs"] + schema["codes"] + schema["numeric"]
    for col in needed:
        if col not in columns:
            what = "target column" if col == schema["target"] else "column"
            raise DataError(path, f"line 1: no {what} {col!r}")
    for col in schema["numeric"]:
        numeric_column(columns, col, str(path))  # a value that is not a number fails here, naming its line
    labels = _targets(path, columns, schema)
    keep = labels >= 0
    skipped = ()
    if not keep.all():
        skipped = ({"file": str(path), "reason": f"{int((~keep).sum())} rows without a target "
                                                 f"({schema['target']} is ?)"},)
        columns = {k: v[keep] for k, v in columns.items()}
        labels = labels[keep]
    y = np.zeros((len(labels), len(schema["classes"])), dtype=np.int8)
    y[np.arange(len(labels)), labels] = 1
    groups = columns[schema["group"]] if schema.get("group") else columns["__line__"].astype(str)
    return columns, y, groups, skipped


def _targets(path: Path, columns: dict[str, np.ndarray], schema: dict[str, Any]) -> np.ndarray:
    """Class index per row, -1 where the target is missing."""
    index = {c: i for i, c in enumerate(schema["classes"])}
    out = np.empty(len(columns["__line__"]), dtype=np.int64)
    col = schema["target"]
    for i, (value, line) in enumerate(zip(columns[col].tolist(), columns["__line__"].tolist())):
        value = value.strip()
        if value in (MISSING, ""):
            out[i] = -1
            continue
        if schema["derive"] == "icd9_chapter":
            try:
                value = icd9_chapter(value)
            except ValueError:
                raise DataError(path, f"line {line}, column {col!r}: {value!r} is not an ICD-9 code") from None
        elif schema["derive"] == "<30":
            value = "<30" if value == "<30" else "rest"
        if value not in index:
            raise DataError(path, f"line {line}, column {col!r}: unknown target {value!r} "
                                  f"(known: {', '.join(schema['classes'])})")
        out[i] = index[value]
    return out


def _all_numbers(values: np.ndarray) -> bool:
    try:
        values.astype(np.float64)
        return True
    except ValueError:
        return False


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in text.split(";") if n.strip()] if text else []


def _fingerprint(path: Path, schema: dict[str, Any]) -> str:
    st = os.stat(path)
    h = hashlib.sha256(f"table v{CACHE_FORMAT}\0{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    h.update(json.dumps(schema, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _cache_dir(cache_root: Path | None) -> Path:
    # the rule of n2nas.data.spec.default_cache_root (spec imports this module, so it cannot be imported here)
    root = cache_root or os.environ.get("N2NAS_CACHE", Path.home() / ".cache" / "n2nas")
    return Path(root) / "tables"


def _store_entry(entry: Path, X: sp.csr_matrix, encoder: dict, **arrays) -> None:
    """Write an entry atomically (temporary folder + rename); an unwritable cache only costs speed."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
    except OSError:
        return
    try:
        sp.save_npz(tmp / "X.npz", X, compressed=False)
        meta = {"encoder": encoder}
        if arrays:
            np.save(tmp / "y.npy", arrays["y"])
            np.save(tmp / "groups.npy", np.asarray(arrays["groups"]).astype(str))
            meta["skipped"] = list(arrays["skipped"])
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, entry)
    except OSError:
        pass  # another process stored the same entry first, or the disk is full: theirs is identical
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_entry(entry: Path, full: bool):
    if not (entry / "meta.json").is_file():
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text())
        X = sp.load_npz(entry / "X.npz").tocsr().astype(np.float32, copy=False)
        if not full:
            return X, meta["encoder"]
        y = np.load(entry / "y.npy")
        groups = np.load(entry / "groups.npy")
        return X, meta["encoder"], y, groups, meta["skipped"]
    except (OSError, ValueError, KeyError):
        return None  # a damaged entry is recomputed
