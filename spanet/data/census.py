"""The labels of a data set per split, counted before anything is decoded: what `--classes` is checked against.

Splits are decided by the same lot hash ingestion uses (`spanet.data.splits`), so a class that
would have no wafer in the eval or test split is found before any component runs.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from spanet.data.formats.base import Reader
from spanet.data.splits import assign_split


@dataclass(frozen=True)
class LabelCensus:
    """Records per split and label, as planned (records that later fail to decode are still counted)."""

    per_split: Dict[str, Dict[str, int]]

    @property
    def labels(self) -> List[str]:
        """Every label present, sorted."""
        return sorted({label for counts in self.per_split.values() for label in counts})

    def total(self, label: str) -> int:
        return sum(counts.get(label, 0) for counts in self.per_split.values())

    def missing_from(self, label: str) -> List[str]:
        """The splits in which `label` has no record."""
        return [split for split, counts in self.per_split.items() if not counts.get(label)]


def take_census(reader: Reader, path: str, ratios: Mapping[str, float], seed: int = 0) -> Optional[LabelCensus]:
    """Count the labels `reader` would read from `path`, per split; None where the format cannot tell
    without reading everything (then ``reader.vocabulary`` names its fixed label set, if any).

    Raises DataInputError (from the reader's plan) when the input is unusable as a whole.
    """
    planned = reader.planned_labels(reader.plan(path))
    if planned is None:
        return None
    per_split: Dict[str, Counter] = {split: Counter() for split in ratios}
    splits: Dict[str, str] = {}
    for label, key in planned:
        split = splits.get(key)
        if split is None:
            split = splits[key] = assign_split(key, ratios, seed)
        per_split[split][label] += 1
    return LabelCensus({split: dict(counts) for split, counts in per_split.items()})


def parse_class_list(text: str) -> Tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``; ValueError naming an empty or repeated name."""
    names = tuple(part.strip() for part in text.split(","))
    empty = [i + 1 for i, name in enumerate(names) if not name]
    if empty:
        raise ValueError(f"--classes {text!r}: name {empty[0]} is empty; give names separated by commas")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--classes {text!r}: {repeated} listed more than once")
    return names
