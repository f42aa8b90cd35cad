"""The wafer-map defect classes (WM-811K naming) shared by every reader and the generator."""

from typing import Tuple

#: The nine WM-811K failure types, in the fixed order used for class ids.
WAFER_CLASSES: Tuple[str, ...] = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Random",
    "Scratch",
    "none",
)

#: The class of a wafer with no defect pattern.
NORMAL_CLASS = "none"

#: Grey levels of the wafer-map-as-image convention: one pixel per die.
OFF_WAFER_LEVEL = 0
PASS_DIE_LEVEL = 128
FAIL_DIE_LEVEL = 255

#: Die states of a wafer bin map (the WM-811K / MixedWM38 coding).
OFF_WAFER_DIE = 0
PASS_DIE = 1
FAIL_DIE = 2

#: Separator between the parts of a mixed-type label, e.g. ``Center+Loc``.
MIXED_LABEL_SEPARATOR = "+"

#: The defect classes of MixedWM38's 8-bit multi-hot label, in the file's bit order.
MIXEDWM38_BIT_ORDER: Tuple[str, ...] = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Scratch",
    "Random",
)

#: Pairs of patterns that cannot occur together (MixedWM38 has no such maps).
EXCLUDED_MIXES: Tuple[Tuple[str, str], ...] = (("Center", "Donut"), ("Edge-Loc", "Edge-Ring"))


def mixed_label(parts) -> str:
    """Name a (possibly mixed) pattern by its parts joined with ``+`` in WAFER_CLASSES order.

    No parts means a normal wafer (``none``); ``none`` itself is dropped from a mix.
    Raises ValueError naming an unknown part.
    """
    unknown = [p for p in parts if p not in WAFER_CLASSES]
    if unknown:
        raise ValueError(f"unknown wafer class(es) {unknown}; expected some of {list(WAFER_CLASSES)}")
    defects = {p for p in parts if p != NORMAL_CLASS}
    if not defects:
        return NORMAL_CLASS
    return MIXED_LABEL_SEPARATOR.join(c for c in WAFER_CLASSES if c in defects)


def label_parts(label: str) -> Tuple[str, ...]:
    """Split a (possibly mixed) label into its class names: ``'Center+Loc'`` -> ``('Center', 'Loc')``."""
    return tuple(label.split(MIXED_LABEL_SEPARATOR))
