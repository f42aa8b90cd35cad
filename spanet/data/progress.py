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


class _NoBar:
    """What :func:`progress_bar` gives when disabled: ``update`` does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int, desc: str = "", unit: str = "item", enabled: bool = True):
    """A context-managed bar on stderr to ``update(n)`` by hand (tqdm), or a silent stand-in when disabled."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, smoothing=0.1)
