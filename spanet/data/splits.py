"""Deterministic splits by lot: a hash of the lot decides the split, so no lot is in two splits."""

import hashlib
from typing import Dict, Mapping, Tuple

#: The default split of the pipeline: names and relative sizes.
DEFAULT_SPLIT_RATIOS: Dict[str, float] = {"train": 0.8, "eval": 0.2}


def normalise_ratios(ratios: Mapping[str, float]) -> Tuple[Tuple[str, float], ...]:
    """Validate split ratios and return (name, cumulative upper bound) pairs in the given order."""
    if not ratios:
        raise ValueError("split_ratios must name at least one split")
    bad = {k: v for k, v in ratios.items() if not isinstance(v, (int, float)) or v <= 0}
    if bad:
        raise ValueError(f"split ratios must be positive numbers, got {bad}")
    for name in ratios:
        if not name or not all(c.isalnum() or c in "_-" for c in name):
            raise ValueError(f"split name {name!r} must be non-empty letters, digits, '_' or '-'")
    total = float(sum(ratios.values()))
    bounds, acc = [], 0.0
    for name, value in ratios.items():
        acc += value / total
        bounds.append((name, acc))
    bounds[-1] = (bounds[-1][0], 1.0)
    return tuple(bounds)


def assign_split(split_key: str, ratios: Mapping[str, float], seed: int = 0) -> str:
    """The split of a record whose split key (lot) is `split_key`; same key, same split, for a seed."""
    digest = hashlib.sha256(f"{seed}\x00{split_key}".encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    for name, bound in normalise_ratios(ratios):
        if u < bound:
            return name
    return next(reversed(list(ratios)))
