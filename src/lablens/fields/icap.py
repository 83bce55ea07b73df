"""ICAP (International Consensus on ANA Patterns) codes and families of the pattern names labs use.

ICAP reports a HEp-2 result by compartment: nuclear patterns (AC-1 … AC-14, AC-29), cytoplasmic ones
(AC-15 … AC-23) and mitotic ones (AC-24 … AC-28) are named apart, so a serum can be "AC-2 nuclear fine speckled
and AC-21 cytoplasmic reticular/AMA". Class names are matched case-insensitively, with ``-``, ``_`` and spaces
alike, against the ICAP names, common synonyms and the short codes of public HEp-2 sets (``HOM``, ``AMA`` …);
a class named after its code (``AC-21``) is understood too. A name not in the table has no family: the report
then says so rather than guessing.
"""

from __future__ import annotations

import re

NUCLEAR, CYTOPLASMIC, MITOTIC, NEGATIVE = "nuclear", "cytoplasmic", "mitotic", "negative"
FAMILIES = (NUCLEAR, CYTOPLASMIC, MITOTIC)

#: name (normalised) -> ICAP code; the family follows from the code
_CODES: dict[str, str] = {
    "negative": "AC-0",
    "neg": "AC-0",
    "homogeneous": "AC-1",
    "hom": "AC-1",
    "speckled": "AC-2,4,5",
    "spk": "AC-2,4,5",
    "zia": "AC-2,4,5",  # the speckled slides of the public ana-fields set
    "dense_fine_speckled": "AC-2",
    "dfs": "AC-2",
    "fine_speckled": "AC-4",
    "coarse_speckled": "AC-5",
    "centromere": "AC-3",
    "cen": "AC-3",
    "aca": "AC-3",
    "nuclear_dots": "AC-6,7",
    "dots": "AC-6,7",
    "dot": "AC-6,7",
    "multiple_nuclear_dots": "AC-6",
    "few_nuclear_dots": "AC-7",
    "nucleolar": "AC-8,9,10",
    "nuc": "AC-8,9,10",
    "nuclear_envelope": "AC-11,12",
    "nuclear_membrane": "AC-11,12",
    "pleomorphic": "AC-13,14",
    "pcna": "AC-13",
    "cenp_f": "AC-14",
    "topo_i": "AC-29",
    "fibrillar": "AC-15,16,17",
    "fib": "AC-15,16,17",
    "actin": "AC-15",
    "cytoplasmic_fibrillar": "AC-15,16,17",
    "cytoplasmic_speckled": "AC-18,19,20",
    "mitochondrial": "AC-21",
    "ama": "AC-21",
    "reticular": "AC-21",
    "golgi": "AC-22",
    "rods_and_rings": "AC-23",
    "mitotic": "AC-24,25,26,27,28",
    "centrosome": "AC-24",
    "spindle_fibres": "AC-25",
    "spindle_fibers": "AC-25",
    "numa": "AC-26",
    "intercellular_bridge": "AC-27",
    "mitotic_chromosome_coat": "AC-28",
}

_CODE = re.compile(r"^ac-?(\d+)$")


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def icap_code(name: str) -> str | None:
    """The ICAP code(s) of a pattern class name, ``None`` when the name is not known."""
    key = _norm(name)
    if key in _CODES:
        return _CODES[key]
    m = _CODE.match(key.replace("_", "-"))
    return f"AC-{int(m.group(1))}" if m else None


def pattern_family(name: str) -> str | None:
    """``nuclear`` | ``cytoplasmic`` | ``mitotic`` | ``negative`` for a class name, ``None`` when unknown."""
    code = icap_code(name)
    if code is None:
        return None
    first = int(code.split("-")[1].split(",")[0])
    if first == 0:
        return NEGATIVE
    if 15 <= first <= 23:
        return CYTOPLASMIC
    if 24 <= first <= 28:
        return MITOTIC
    return NUCLEAR


def families(classes: list[str] | tuple[str, ...]) -> set[str]:
    """The pattern families the positive classes of a classifier cover (unknown names left out)."""
    return {f for c in classes if (f := pattern_family(c)) in FAMILIES}
