"""Folder readers: PhysioNet/CinC 2017, CinC 2020/2021 and any WFDB folder with a label CSV.

Each returns a :class:`Dataset`. A bad file raises :class:`DataError` naming it, unless ``skip_bad`` is set, in
which case it is left out and listed in ``Dataset.skipped`` with its reason.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

from n2nas.data.record import Dataset, Record, Skipped
from n2nas.data.snomed import ScoringTable, default_scoring_table
from n2nas.data.wfdb_io import RawRecord, fingerprint_files, read_wfdb_record
from n2nas.errors import DataError

CINC2017_CLASSES = ("N", "A", "O", "~")
CINC2017_FS = 300.0
# A first row naming its columns, e.g. ``record,label`` or ``record,labels``: a header, never a record.
_HEADER_FIRST = ("record", "records", "id", "record_id", "ecg_id", "filename")
_HEADER_SECOND = ("label", "labels", "class", "classes", "dx", "diagnosis", "diagnoses")


class _BadInput:
    """Raise on the first bad file, or collect every one of them when skipping."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.skipped: list[Skipped] = []

    def __call__(self, err: DataError) -> None:
        if not self.skip_bad:
            raise err
        self.skipped.append(Skipped(err.where, err.problem))


def _check_folder(folder: Path) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise DataError(folder, "no such folder")
    if not folder.is_dir():
        raise DataError(folder, "not a folder")
    try:
        next(folder.iterdir(), None)
    except PermissionError:
        raise DataError(folder, "folder is not readable (permission denied)") from None
    return folder


def read_label_csv(path: Path, *, known: tuple[str, ...] | None, bad: _BadInput,
                   multi_sep: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """Read ``record,label`` rows (optional header); labels split on ``multi_sep`` for multi-label files."""
    if not path.is_file():
        raise DataError(path, "label file is missing")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read label file ({err})") from None
    out: list[tuple[str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for line_no, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        if line_no == 1 and len(row) >= 2 and row[0].strip().lower() in _HEADER_FIRST \
                and row[1].strip().lower() in _HEADER_SECOND:
            continue
        where = f"{path}:{line_no}"
        if len(row) < 2 or not row[0].strip():
            bad(DataError(where, f"expected 'record,label', got {','.join(row)!r}"))
            continue
        rid, raw = row[0].strip(), row[1].strip()
        labels = tuple(x.strip() for x in raw.split(multi_sep) if x.strip()) if multi_sep else (raw,)
        unknown = [lab for lab in labels if known is not None and lab not in known]
        if not labels or unknown:
            bad(DataError(where, f"unknown label {(unknown or [raw])[0]!r} for record {rid} "
                                 f"(known: {', '.join(known or ())})"))
            continue
        if rid in seen:
            bad(DataError(where, f"record {rid} is listed twice"))
            continue
        seen.add(rid)
        out.append((rid, labels))
    return out


def _read_listed(folder: Path, listed: list[tuple[str, tuple[str, ...]]], bad: _BadInput,
                 read: Callable[[Path], RawRecord]) -> list[Record]:
    records = []
    for rid, labels in listed:
        try:
            raw = read(folder / rid)
        except DataError as err:
            bad(err)
            continue
        meta = {"files": [str(f) for f in raw.files], **header_fields(raw.comments)}
        records.append(Record(rid, raw.signal, raw.fs, raw.leads, labels, meta))
    return records


def header_fields(comments: tuple[str, ...]) -> dict[str, str]:
    """``key: value`` header comments (e.g. PTB-XL's ``# fold: train``) as ``{"header": {key: value}}``, keys
    lower-cased; empty when there are none. Kept in ``Record.meta``, never used for training."""
    fields = {}
    for line in comments:
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            fields[key.strip().lower()] = value.strip()
    return {"header": fields} if fields else {}


def _finish(source: str, folder: Path, records: list[Record], classes: tuple[str, ...], multilabel: bool,
            bad: _BadInput, extra_files: list[Path], scored: tuple[str, ...] | None = None) -> Dataset:
    if not records:
        detail = f"; {len(bad.skipped)} bad files were skipped" if bad.skipped else ""
        raise DataError(folder, f"no usable records found{detail}")
    files = extra_files + [Path(f) for r in records for f in r.meta["files"]]
    files += [folder / f"{r.id}.hea" for r in records]
    return Dataset(source, tuple(records), classes, multilabel, fingerprint_files(source, files),
                   tuple(bad.skipped), scored)


def load_physionet2017(folder: str | Path, *, skip_bad: bool = False, min_seconds: float = 1.0) -> Dataset:
    """PhysioNet/CinC 2017: ``REFERENCE.csv`` (no header) + ``.hea``/``.mat``, single lead at 300 Hz, N/A/O/~."""
    folder = _check_folder(Path(folder))
    reference = folder / "REFERENCE.csv"
    if not reference.is_file():
        if not any(folder.glob("*.hea")):
            raise DataError(folder, "no records found (expected REFERENCE.csv and .hea/.mat files)")
        raise DataError(reference, "label file is missing")
    bad = _BadInput(skip_bad)
    listed = read_label_csv(reference, known=CINC2017_CLASSES, bad=bad)
    if not listed and not bad.skipped:
        raise DataError(reference, "no records listed")
    records = _read_listed(folder, listed, bad,
                           lambda stem: read_wfdb_record(stem, expected_fs=CINC2017_FS, min_seconds=min_seconds))
    return _finish(f"physionet2017:{folder.resolve()}", folder, records, CINC2017_CLASSES, False, bad, [reference])


def load_wfdb_csv(folder: str | Path, labels_csv: str | Path, *, skip_bad: bool = False,
                  min_seconds: float = 1.0, multi_sep: str = ";") -> Dataset:
    """Any WFDB folder plus a ``record,label`` CSV (an optional header row such as ``record,labels``); ``a;b`` in
    the label column makes the data multi-label. Every listed record must exist (DataError naming the row's file
    otherwise); records on disk without a row are listed in ``Dataset.skipped``. ``key: value`` header comments
    (e.g. ``# fold: train``) are kept in ``Record.meta["header"]``."""
    folder = _check_folder(Path(folder))
    labels_path = Path(labels_csv)
    bad = _BadInput(skip_bad)
    listed = read_label_csv(labels_path, known=None, bad=bad, multi_sep=multi_sep)
    if not listed:
        raise DataError(labels_path, "no records listed")
    multilabel = any(len(labs) != 1 for _, labs in listed)
    classes = tuple(sorted({lab for _, labs in listed for lab in labs}))
    records = _read_listed(folder, listed, bad, lambda stem: read_wfdb_record(stem, min_seconds=min_seconds))
    # a record on disk without a label row is left out, but never silently: data summary lists it
    named = {rid for rid, _ in listed}
    bad.skipped.extend(Skipped(str(hea), f"no row for record {hea.stem} in {labels_path.name}")
                       for hea in sorted(folder.glob("*.hea")) if hea.stem not in named)
    return _finish(f"wfdb:{folder.resolve()},{labels_path.resolve()}", folder, records, classes, multilabel,
                   bad, [labels_path])


def parse_dx(comments: tuple[str, ...], header_path: Path) -> list[str]:
    """SNOMED-CT codes from a ``# Dx: code,code`` header comment."""
    for line in comments:
        key, _, value = line.partition(":")
        if key.strip().lower() == "dx":
            codes = [c.strip() for c in value.split(",") if c.strip()]
            for c in codes:
                if not c.isdigit():
                    raise DataError(header_path, f"Dx code {c!r} is not a SNOMED-CT number")
            if not codes:
                raise DataError(header_path, "the Dx line lists no diagnosis")
            return codes
    raise DataError(header_path, "no '# Dx:' diagnosis line in the header")


def load_cinc2021(folder: str | Path, *, skip_bad: bool = False, min_seconds: float = 1.0,
                  table: ScoringTable | None = None) -> Dataset:
    """PhysioNet/CinC 2020/2021: ``.hea``/``.mat`` anywhere below ``folder``, multi-label ``# Dx:`` codes.

    Codes are mapped onto the challenge's scored classes, merging equivalent codes (``713427006|59118001``);
    unscored codes are kept in ``meta['unscored_dx']``. ``classes`` is the full scored list so that every
    CinC data set shares one output layout.
    """
    folder = _check_folder(Path(folder))
    table = table or default_scoring_table()
    headers = sorted(folder.rglob("*.hea"))
    if not headers:
        raise DataError(folder, "no records found (expected .hea/.mat files with '# Dx:' lines)")
    bad = _BadInput(skip_bad)
    records = []
    for hea in headers:
        try:
            raw = read_wfdb_record(hea.with_suffix(""), min_seconds=min_seconds)
            codes = parse_dx(raw.comments, hea)
        except DataError as err:
            bad(err)
            continue
        scored = tuple(dict.fromkeys(c for c in map(table.class_of, codes) if c is not None))
        meta = {"files": [str(f) for f in raw.files], "dx": codes,
                "unscored_dx": [c for c in codes if table.class_of(c) is None]}
        meta.update(_demographics(raw.comments))
        records.append(Record(hea.stem, raw.signal, raw.fs, raw.leads, scored, meta))
    return _finish(f"cinc2021:{folder.resolve()}", folder, records, table.classes, True, bad, [], table.classes)


def _demographics(comments: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for line in comments:
        key, _, value = line.partition(":")
        if key.strip().lower() in ("age", "sex"):
            out[key.strip().lower()] = value.strip()
    return out
