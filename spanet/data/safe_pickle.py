"""A restricted unpickler for WM-811K's ``LSWMD.pkl``: only the numpy / pandas objects a DataFrame of
arrays needs may be loaded. Loading a pickle can run arbitrary code (any importable callable can be
called while loading), so everything else is refused before it is even imported.

Handles files written by Python 2 / pandas 0.x: ``latin1`` strings and the old ``pandas.indexes``
module path (pandas' own compatibility map plus a prefix rule).
"""

import _compat_pickle
import copy
import functools
import importlib
import io
import math
import pickle
from typing import Any, BinaryIO, Callable, FrozenSet, Sequence, Tuple

from spanet.data.records import DataInputError

try:  # pandas' unpickler knows the quirks of old pandas pickles (BlockManager, Index construction)
    from pandas.compat.pickle_compat import Unpickler as _BaseUnpickler
except ImportError:  # pragma: no cover - depends on the pandas version
    _BaseUnpickler = pickle._Unpickler  # type: ignore[attr-defined,misc]

_WHY = (
    "a pickle can run arbitrary code while it loads, so only the numpy / pandas classes that a "
    "WM-811K DataFrame needs are allowed"
)
_ALLOWED_MODULES = ("numpy", "pandas", "builtins", "copyreg", "_codecs")
_OLD_PREFIXES: Tuple[Tuple[str, str], ...] = (
    ("pandas.indexes.", "pandas.core.indexes."),
    ("numpy._core.", "numpy.core."),
)


#: Most elements an allow-listed constructor may be asked to make from a size argument (``bytes(n)``,
#: ``ndarray(shape)``, ``list(range(n))``): a WM-811K pickle carries its data inline, so only a hostile
#: one asks for more, e.g. 800 MB from a 50-byte file.
MAX_CONSTRUCTED_ELEMENTS = 1 << 26


class UnsafePickleError(DataInputError):
    """The pickle references something outside the allow-list; it was refused without running it."""


def _optional(module: str, *names: str) -> list:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return []
    return [getattr(mod, n) for n in names if hasattr(mod, n)]


@functools.lru_cache(maxsize=1)
def allowed_objects() -> FrozenSet[Any]:
    """The exact objects (classes / reconstructor functions) a WM-811K DataFrame pickle may reference."""
    import builtins
    import copyreg
    import _codecs

    objs = [
        builtins.object,
        builtins.slice,
        builtins.bytes,
        builtins.bytearray,
        builtins.set,
        builtins.frozenset,
        builtins.complex,
        builtins.range,
        builtins.list,
        builtins.tuple,
        builtins.dict,
        builtins.int,
        builtins.float,
        builtins.str,
        builtins.bool,
        copyreg._reconstructor,
        _codecs.encode,
    ]
    objs += _optional("numpy", "ndarray", "dtype")
    objs += _optional("numpy.core.multiarray", "_reconstruct", "scalar")
    objs += _optional("numpy.core.numeric", "_frombuffer")
    objs += _optional("pandas.core.frame", "DataFrame")
    objs += _optional("pandas.core.series", "Series")
    objs += _optional("pandas.core.indexes.base", "Index", "_new_Index")
    objs += _optional("pandas.core.indexes.range", "RangeIndex")
    objs += _optional("pandas.core.indexes.numeric", "Int64Index", "UInt64Index", "Float64Index", "NumericIndex")
    objs += _optional("pandas.core.indexes.frozen", "FrozenList")
    objs += _optional("pandas.core.internals.managers", "BlockManager", "SingleBlockManager")
    objs += _optional(
        "pandas.core.internals.blocks", "new_block", "Block", "ObjectBlock", "NumericBlock", "FloatBlock", "IntBlock"
    )
    objs += _optional("pandas._libs.internals", "_unpickle_block", "BlockPlacement")
    return frozenset(objs)


def _modernise(module: str, name: str) -> Tuple[str, str]:
    """Map Python 2 and old pandas / numpy locations to today's."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    for old, new in _OLD_PREFIXES:
        if module.startswith(old):
            module = new + module[len(old) :]
            break
    return module, name


def _requested_size(value: Any) -> int:
    """How many elements an argument asks a constructor to make: an int, a range, or a shape of ints."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return abs(value)
    if isinstance(value, range):
        return len(value)
    if (
        isinstance(value, (tuple, list))
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return math.prod(abs(v) for v in value)
    return 0


def _check_sizes(source: str, func: Any, args: Sequence[Any], kwargs: Any = None) -> None:
    """UnsafePickleError when a call would make more than MAX_CONSTRUCTED_ELEMENTS from a small argument."""
    values = list(args) + list((kwargs or {}).values())
    largest = max((_requested_size(v) for v in values), default=0)
    if largest > MAX_CONSTRUCTED_ELEMENTS:
        name = getattr(func, "__qualname__", type(func).__name__)
        raise UnsafePickleError(
            f"{source}: refused {name}(...) asking for {largest:,} elements (at most {MAX_CONSTRUCTED_ELEMENTS:,}): "
            "a data pickle holds its data, it does not ask for memory it does not carry"
        )


def _guarded(opcode: bytes, arguments: Callable[[list], Tuple[Any, Sequence[Any], Any]]) -> Callable:
    """A dispatch entry that checks the call an opcode is about to make, then runs the base entry."""
    base = _BaseUnpickler.dispatch[opcode[0]]

    def load(self):
        func, args, kwargs = arguments(self.stack)
        _check_sizes(self.source, func, args, kwargs)
        return base(self)

    return load


class RestrictedUnpickler(_BaseUnpickler):  # type: ignore[misc,valid-type]
    """Unpickler that resolves only allow-listed numpy / pandas / builtin objects, and bounds what they make."""

    source = "pickle"
    # REDUCE: stack [..., func, args]; NEWOBJ: [..., cls, args]; NEWOBJ_EX: [..., cls, args, kwargs].
    dispatch = copy.copy(_BaseUnpickler.dispatch)
    dispatch[pickle.REDUCE[0]] = _guarded(pickle.REDUCE, lambda stack: (stack[-2], stack[-1], None))
    dispatch[pickle.NEWOBJ[0]] = _guarded(pickle.NEWOBJ, lambda stack: (stack[-2], stack[-1], None))
    dispatch[pickle.NEWOBJ_EX[0]] = _guarded(pickle.NEWOBJ_EX, lambda stack: (stack[-3], stack[-2], stack[-1]))

    def find_class(self, module: str, name: str) -> Any:
        mod, attr = _modernise(module, name)
        if mod.split(".")[0] not in _ALLOWED_MODULES:
            raise UnsafePickleError(f"{self.source}: refused to load {module}.{name}: {_WHY}")
        try:
            obj = super().find_class(mod, attr)
        except (ImportError, AttributeError) as exc:
            raise DataInputError(f"{self.source}: cannot resolve {module}.{name} ({exc})") from exc
        if obj not in allowed_objects():
            raise UnsafePickleError(f"{self.source}: refused to load {module}.{name}: {_WHY}")
        return obj


def restricted_load(fh: BinaryIO, source: str = "pickle") -> Any:
    """Load a pickle through RestrictedUnpickler (``latin1`` for Python 2 strings)."""
    unpickler = RestrictedUnpickler(fh, encoding="latin1")
    unpickler.source = source
    try:
        return unpickler.load()
    except DataInputError:
        raise
    except Exception as exc:  # truncated / corrupt pickle
        raise DataInputError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def restricted_loads(data: bytes, source: str = "pickle") -> Any:
    """`restricted_load` from bytes."""
    return restricted_load(io.BytesIO(data), source)
