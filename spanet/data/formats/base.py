"""What every reader shares: the plan / shard / read protocol that lets ingestion parallelise.

A reader first *plans* (cheap: list files, parse a manifest, check headers) into picklable
`Shard`s, then *reads* each shard, possibly in another process. Both steps yield
`RejectedRecord`s for bad records instead of raising; `DataInputError` is only for an input
that is unusable as a whole.
"""

import abc
import dataclasses
import os
from dataclasses import dataclass
from typing import ClassVar, Iterator, List, Optional, Tuple

import numpy as np

from spanet.data.records import DataInputError, ReadResult, RejectedRecord, WaferRecord, split_key


@dataclass(frozen=True)
class FileEntry:
    """One input file with the label and metadata known before it is opened (folder name / manifest)."""

    path: str
    ref: str
    label: str
    lot_id: str = ""
    wafer_id: str = ""
    stage: Optional[str] = None


@dataclass(frozen=True)
class Shard:
    """A unit of reading work: a group of files, or a [start, stop) range of one array file."""

    path: str
    entries: Tuple[FileEntry, ...] = ()
    start: int = 0
    stop: int = 0
    #: Stride of the range (shuffled plans interleave the records of an array file).
    step: int = 1


@dataclass(frozen=True)
class ReadPlan:
    """The shards to read and the records already rejected while planning (e.g. manifest rows)."""

    shards: Tuple[Shard, ...]
    rejected: Tuple[RejectedRecord, ...] = ()


class Reader(abc.ABC):
    """A reader of one input format. Subclasses are frozen dataclasses of JSON-able options."""

    #: The format name, also written as the examples' ``source``.
    name: str = ""
    #: The fixed label set of a format whose labels cannot be listed without reading it all (WM-811K).
    vocabulary: ClassVar[Optional[Tuple[str, ...]]] = None

    @abc.abstractmethod
    def plan(self, path: str) -> ReadPlan:
        """List the work for `path`; raise DataInputError if `path` is unusable as a whole."""

    @abc.abstractmethod
    def read_shard(self, shard: Shard) -> Iterator[ReadResult]:
        """Read one shard, yielding a WaferRecord or a RejectedRecord per input record."""

    def planned_labels(self, plan: ReadPlan) -> Optional[List[Tuple[str, str]]]:
        """(label, split key) of every record the plan will read, known without decoding anything; None
        where a format cannot tell before reading. Files take the label of their folder or manifest row."""
        if not all(shard.entries for shard in plan.shards):
            return None
        return [(e.label, split_key(e.lot_id, e.ref)) for shard in plan.shards for e in shard.entries]

    def read(self, path: str) -> Iterator[ReadResult]:
        """Read all of `path` in this process; DataInputError at the end if no record was readable."""
        plan = self.plan(path)
        yield from plan.rejected
        good = 0
        for shard in plan.shards:
            for result in self.read_shard(shard):
                good += isinstance(result, WaferRecord)
                yield result
        if good == 0:
            raise DataInputError(f"{path}: no readable record found by the {self.name!r} reader")


def single_file(path: str, extensions: Tuple[str, ...], kind: str) -> str:
    """`path` itself if it is a file, or the one file with `extensions` in folder `path` (DataInputError otherwise)."""
    path = require_path(path, kind)
    if os.path.isfile(path):
        return path
    found = sorted(n for n in os.listdir(path) if n.lower().endswith(extensions))
    if len(found) != 1:
        raise DataInputError(
            f"folder {path!r} must hold exactly one {'/'.join(extensions)} file, found {found or 'none'}"
        )
    return os.path.join(path, found[0])


def require_path(path: str, kind: str = "path") -> str:
    """Return `path` as an absolute path, or raise DataInputError if it does not exist."""
    if not path or not os.path.exists(path):
        raise DataInputError(f"{kind} {path!r} does not exist")
    return os.path.abspath(path)


def shuffle_plan(plan: ReadPlan, seed: int) -> ReadPlan:
    """The same work in a seeded random order: files dealt randomly into shards, array ranges interleaved.

    Readers keep input order (round trips and reports rely on it); ingestion shuffles the plan so
    that every shard mixes classes (inputs are often stored grouped by class) without a global shuffle.
    """
    shards = plan.shards
    if not shards:
        return plan
    if any(s.entries for s in shards):
        entries = [e for s in shards for e in s.entries]
        order = np.random.default_rng([seed, 7]).permutation(len(entries))
        size = max(len(s.entries) for s in shards)
        dealt = [entries[i] for i in order]
        new = tuple(
            dataclasses.replace(shards[0], entries=tuple(dealt[i : i + size])) for i in range(0, len(dealt), size)
        )
        return ReadPlan(new, plan.rejected)
    if len(shards) > 1 and all(s.step == 1 and s.path == shards[0].path for s in shards):
        start, stop, k = min(s.start for s in shards), max(s.stop for s in shards), len(shards)
        new = tuple(Shard(shards[0].path, start=start + i, stop=stop, step=k) for i in range(k))
        return ReadPlan(new, plan.rejected)
    return plan
