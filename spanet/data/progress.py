"""Progress bars for long data work (tqdm when installed, a silent pass-through otherwise)."""

from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: Optional[int] = None, desc: str = "", enabled: bool = True) -> Iterator[T]:
    """Wrap `items` in a tqdm progress bar on stderr when `enabled`."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a declared dependency; stay usable without it
        yield from items
        return
    yield from tqdm(items, total=total, desc=desc, unit="map", smoothing=0.1)
