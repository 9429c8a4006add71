"""SYNTHETIC patient-phenotype matrices shaped like DiagnoseNET's PMSI-SSR data (``synthetic-ehr[:N[,F]]``).

Not real patients: every value is drawn from the seeded generator below, and the dataset says so (``source``
starts with ``synthetic-ehr``, ``synthetic=True``, classes are named ``syn-cpNN``).

Shape (DiagnoseNET, García Henao et al.): binary features grouped as demographics, admission,
hospitalization, physical dependence, cognitive dependence, rehabilitation time (one-hot encoded categorical
variables), then comorbidities, morbidity and etiology (ICD-10-like code vocabularies filling the remaining
columns); 14 care-purpose classes; 14637 features by default.

The learnable signal, documented so that results can be judged:

- morbidity: class ``c`` owns its own block of ``signature_codes`` morbidity codes; a patient's one morbidity
  code comes from its class block with probability ``signal``, otherwise from the whole vocabulary;
- etiology: the same with probability ``signal / 2`` (one code per patient);
- physical / cognitive dependence and rehabilitation time: per-class categorical distributions
  (seeded random class preferences, ``tilt`` 0.8-1.0 on the logits); demographics and hospitalization
  weakly (0.3-0.5); admission barely;
- comorbidities: ``1 + Poisson(comorbidity_mean)`` codes from a Zipf-like popularity, independent of the class
  (pure noise columns, most of the matrix).

So the best possible accuracy is well below 1 but far above the majority share (~26%).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from n2nas.data.ehr_matrix import EHRDataset
from n2nas.errors import ConfigError
from n2nas.presets import preset

N_CLASSES = 14
# Class shares of the 14 care-purpose categories. The DiagnoseNET paper's Table 1 figures were not available
# offline when this was written; these shares are approximate, read off the 1536-patient label sample that
# DiagnoseNET publishes (samples/0_sequentialgraph/dataset/medical_targets_Y14.txt in IADBproject/diagnosenet):
# two dominant purposes, five mid-sized ones and a long tail. Replace them with Table 1's if they differ.
CLASS_SHARES = (0.005, 0.11, 0.09, 0.07, 0.03, 0.09, 0.26, 0.19, 0.01, 0.02, 0.005, 0.025, 0.09, 0.005)
CLASSES = tuple(f"syn-cp{i + 1:02d}" for i in range(N_CLASSES))

# Categorical groups: (group, cardinality of each variable in it, class tilt on the logits).
CATEGORICAL = (
    ("demographics", (2, 10, 8), 0.5),             # sex, age band, residence
    ("admission", (8, 10, 4), 0.3),                # mode, provenance, type
    ("hospitalization", (12, 10, 4), 0.5),         # ward, length-of-stay band, full/partial
    ("physical_dependence", (4, 4, 4, 4), 1.0),    # dressing, moving, feeding, continence levels
    ("cognitive_dependence", (4, 4), 1.0),         # behaviour, communication levels
    ("rehabilitation_time", (5,) * 8, 0.8),        # weekly minutes band for 8 professions
)
CODE_SHARES = (("comorbidities", 0.5), ("morbidity", 0.3), ("etiology", 0.2))
MIN_FEATURES = sum(sum(c) for _, c, _ in CATEGORICAL) + 3 * N_CLASSES * 2


@dataclass(frozen=True)
class SyntheticEHRConfig:
    """Size and signal of a synthetic EHR set (see the module docstring for what each knob does)."""

    n_patients: int = 10_000
    n_features: int = 14_637
    signal: float = 0.6
    signature_codes: int = 24
    comorbidity_mean: float = 3.0
    seed: int = 0

    def __post_init__(self):
        if self.n_patients < 2 * N_CLASSES:
            raise ConfigError("synthetic-ehr", f"needs at least {2 * N_CLASSES} patients (2 per class)")
        if self.n_features < MIN_FEATURES:
            raise ConfigError("synthetic-ehr", f"needs at least {MIN_FEATURES} features")
        if not 0.0 <= self.signal <= 1.0:
            raise ConfigError("synthetic-ehr", "signal must lie in [0, 1]")

    @staticmethod
    @preset()
    def tiny() -> "SyntheticEHRConfig":
        """600 patients x 400 features: tests."""
        return SyntheticEHRConfig(n_patients=600, n_features=400)

    @staticmethod
    @preset()
    def diagnosenet() -> "SyntheticEHRConfig":
        """DiagnoseNET's feature count (14637) and 10k patients."""
        return SyntheticEHRConfig()


def feature_layout(n_features: int) -> tuple[tuple[str, int, int], ...]:
    """``(group, start, stop)`` column ranges: categorical groups first, then the code vocabularies."""
    out, start = [], 0
    for name, cards, _ in CATEGORICAL:
        out.append((name, start, start + sum(cards)))
        start += sum(cards)
    rest = n_features - start
    sizes = [int(rest * share) for _, share in CODE_SHARES]
    sizes[0] += rest - sum(sizes)
    for (name, _), size in zip(CODE_SHARES, sizes):
        out.append((name, start, start + size))
        start += size
    return tuple(out)


def class_counts(n: int) -> np.ndarray:
    """Patients per class: the shares of :data:`CLASS_SHARES` (largest remainder), at least 2 each."""
    shares = np.asarray(CLASS_SHARES) / sum(CLASS_SHARES)
    raw = shares * n
    counts = np.floor(raw).astype(int)
    counts[np.argsort(raw - counts)[::-1][:n - counts.sum()]] += 1
    while (counts < 2).any():
        counts[int(np.argmax(counts))] -= 1
        counts[int(np.argmin(counts))] += 1
    return counts


def synthetic_ehr(config: SyntheticEHRConfig = SyntheticEHRConfig()) -> EHRDataset:
    """Generate the synthetic set straight into CSR storage (no dense patients x features array)."""
    rng = np.random.default_rng(config.seed)
    n, n_feat = config.n_patients, config.n_features
    labels = rng.permutation(np.repeat(np.arange(N_CLASSES), class_counts(n)))
    layout = {name: (a, b) for name, a, b in feature_layout(n_feat)}
    rows, cols = [], []
    patients = np.arange(n)
    for name, cards, tilt in CATEGORICAL:
        offset = layout[name][0]
        for k in cards:
            pref = rng.normal(size=(N_CLASSES, k))
            cols.append(offset + _draw(rng, tilt * pref[labels]))
            rows.append(patients)
            offset += k
    for name, share in (("morbidity", config.signal), ("etiology", config.signal / 2)):
        a, b = layout[name]
        block = max(1, min(config.signature_codes, (b - a) // N_CLASSES))
        own = a + labels * block + rng.integers(0, block, n)
        anywhere = rng.integers(a, b, n)
        cols.append(np.where(rng.random(n) < share, own, anywhere))
        rows.append(patients)
    a, b = layout["comorbidities"]
    per_patient = 1 + rng.poisson(config.comorbidity_mean, n)
    popularity = 1.0 / (np.arange(b - a) + 10.0)
    cols.append(a + rng.choice(b - a, size=int(per_patient.sum()), p=popularity / popularity.sum()))
    rows.append(np.repeat(patients, per_patient))
    r, c = np.concatenate(rows), np.concatenate(cols)
    X = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n_feat))
    X.sum_duplicates()
    X.data[:] = 1.0  # repeated comorbidity draws are one code, not a count
    y = np.zeros((n, N_CLASSES), dtype=np.int8)
    y[patients, labels] = 1
    tag = f"{n},{n_feat},{config.signal},{config.signature_codes},{config.comorbidity_mean},{config.seed}"
    return EHRDataset(f"synthetic-ehr:{n},{n_feat}", X, y, CLASSES, False,
                      hashlib.sha256(f"synthetic-ehr\0{tag}".encode()).hexdigest()[:16],
                      feature_layout(n_feat), synthetic=True)


def parse_synthetic_spec(arg: str) -> SyntheticEHRConfig:
    """``""`` -> defaults, ``"N"`` -> N patients, ``"N,F"`` -> N patients x F features."""
    parts = [p.strip() for p in arg.split(",")] if arg else []
    if len(parts) > 2 or any(not p.isdigit() for p in parts):
        raise ConfigError("data spec", f"expected synthetic-ehr[:N[,F]] with whole numbers, got {arg!r}")
    values = dict(zip(("n_patients", "n_features"), map(int, parts)))
    return SyntheticEHRConfig(**values)


def _draw(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One category per row from softmax(logits)."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    return np.minimum((rng.random((len(p), 1)) > cum).sum(axis=1), p.shape[1] - 1)
