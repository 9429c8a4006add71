"""Lead sets of 12-lead ECG pipelines: the ``leads`` token of the 12-lead spaces.

The CinC 2021 challenge scored models on 12, 6, 4, 3 and 2 leads; the sets here are its 12-lead, 6-lead (limb
leads), 3-lead (I, II, V2) and 2-lead (I, II) sets, plus lead II alone (the single lead of most monitors). A
pipeline's ``leads`` token names how many leads its network reads; the network's first convolution then takes
only those channels of the 12-lead input (:class:`search_spaces.ecg_model.LeadSelect`), so fewer leads cost fewer
FLOPs in that convolution and a deployed model only needs those leads recorded.
"""
from __future__ import annotations

from n2nas.errors import ConfigError, DataError

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LEAD_SETS: dict[int, tuple[str, ...]] = {
    12: STANDARD_LEADS,
    6: ("I", "II", "III", "aVR", "aVL", "aVF"),
    3: ("I", "II", "V2"),
    2: ("I", "II"),
    1: ("II",),
}


def lead_names(token) -> tuple[str, ...]:
    """The leads a ``leads`` token value (12, 6, 3, 2 or 1) names."""
    try:
        return LEAD_SETS[int(token)]
    except (KeyError, TypeError, ValueError):
        raise ConfigError("leads", f"expected one of {tuple(LEAD_SETS)}, got {token!r}") from None


def lead_index(token) -> tuple[int, ...]:
    """Channel positions of the token's leads in the standard 12-lead order."""
    return tuple(STANDARD_LEADS.index(name) for name in lead_names(token))


def check_standard_leads(dataset, space: str) -> None:
    """Every record must hold the 12 standard leads in the standard order (names compared without case):
    a 12-lead pipeline picks its leads by position, so a missing or reordered lead must fail here, by name,
    instead of becoming a silent zero or a wrong channel."""
    expected = tuple(n.lower() for n in STANDARD_LEADS)
    for record in getattr(dataset, "records", ()):
        found = tuple(str(n).lower() for n in record.leads)
        if found != expected:
            where = (record.meta.get("files") or [record.id])[0] if record.meta else record.id
            raise DataError(where, f"record {record.id} has {len(found)} lead(s) ({', '.join(record.leads)}); "
                                   f"space {space} needs the 12 standard leads {', '.join(STANDARD_LEADS)} in order")
