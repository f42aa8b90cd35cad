"""WM-811K's LSWMD.pkl: an old-pandas pickle with nested labels, and the restricted unpickler."""

import os
import pickle

import numpy as np
import pandas as pd
import pytest

from spanet.data import (
    DataInputError,
    RejectedRecord,
    RejectKind,
    UnsafePickleError,
    WaferRecord,
    WM811KReader,
    detect_format,
)


def _frame():
    wafer = np.array([[0, 1, 1, 0], [1, 2, 1, 1], [0, 1, 1, 0]], dtype=np.uint8)
    empty = np.zeros((0, 0))
    return pd.DataFrame(
        {
            "waferMap": [wafer, wafer.copy(), np.array([[0, 3]], np.uint8), wafer, np.zeros((0, 0), np.uint8)],
            "dieSize": [1683.0, 1683.0, 10.0, 500.0, 1.0],
            "lotName": ["lot1", "lot1", "lot2", "lot3", "lot3"],
            "waferIndex": [1.0, 2.0, 1.0, 7.0, 8.0],
            "trianTestLabel": [
                np.array([["Training"]]),
                np.array([["Test"]]),
                np.array([["Training"]]),
                empty,
                np.array([["Test"]]),
            ],
            "failureType": [
                np.array([["Center"]]),
                np.array([["none"]]),
                np.array([["Loc"]]),
                empty,
                np.array([["Donut"]]),
            ],
        }
    )


def _old_pandas_pickle(frame) -> bytes:
    """Pickle as old pandas did (protocol 2) with the pre-0.20 module path ``pandas.indexes``."""
    data = pickle.dumps(frame, protocol=2)
    assert b"pandas.core.indexes." in data
    return data.replace(b"pandas.core.indexes.", b"pandas.indexes.")


def test_reads_nested_labels_old_module_path_and_counts_unlabelled(tmp_path):
    path = tmp_path / "LSWMD.pkl"
    path.write_bytes(_old_pandas_pickle(_frame()))
    with pytest.raises(ModuleNotFoundError):  # what a plain load of the real file does
        pickle.loads(path.read_bytes())
    assert detect_format(str(path)) == "wm811k"
    results = list(WM811KReader().read(str(path)))
    good = [r for r in results if isinstance(r, WaferRecord)]
    assert [(r.label, r.lot_id, r.wafer_id, r.source_split, r.ref) for r in good] == [
        ("Center", "lot1", "1", "train", "LSWMD.pkl#0"),
        ("none", "lot1", "2", "test", "LSWMD.pkl#1"),
    ]
    assert good[0].image.tolist() == [[0, 128, 128, 0], [128, 255, 128, 128], [0, 128, 128, 0]]
    bad = {r.ref: r for r in results if isinstance(r, RejectedRecord)}
    assert bad["LSWMD.pkl#2"].kind == RejectKind.INVALID and "unknown die value" in bad["LSWMD.pkl#2"].reason
    assert bad["LSWMD.pkl#3"].kind == RejectKind.UNLABELLED
    assert bad["LSWMD.pkl#4"].kind == RejectKind.INVALID and "empty wafer map" in bad["LSWMD.pkl#4"].reason


def test_the_files_own_split_can_be_selected(tmp_path):
    path = tmp_path / "LSWMD.pkl"
    path.write_bytes(_old_pandas_pickle(_frame()))
    test_part = [r for r in WM811KReader(subset="test").read(str(path)) if isinstance(r, WaferRecord)]
    assert [r.label for r in test_part] == ["none"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "LSWMD.pkl"
    path.write_bytes(pickle.dumps({"waferMap": _Evil(marker)}, protocol=2))
    with pytest.raises(
        UnsafePickleError, match="refused to load posix.system: a pickle can run arbitrary code"
    ) as info:
        list(WM811KReader().read(str(path)))
    assert "numpy / pandas" in str(info.value)
    assert not marker.exists()


def test_other_unusable_pickles(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(DataInputError, match="expected a pickled pandas DataFrame"):
        list(WM811KReader().read(str(path)))
    path.write_bytes(pickle.dumps(pd.DataFrame({"a": [1]}), protocol=2))
    with pytest.raises(DataInputError, match=r"missing column\(s\) \['waferMap', 'failureType'\]"):
        list(WM811KReader().read(str(path)))
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataInputError, match="not a readable pickle"):
        list(WM811KReader().read(str(path)))


class _Asks:
    """Pickles as a call to an allow-listed constructor with a tiny argument that asks for a lot of memory."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


#: ``ndarray.__new__(ndarray, (30000, 30000))`` by the NEWOBJ opcode: PROTO 2, GLOBAL, two BININT2,
#: TUPLE2, TUPLE1, NEWOBJ, STOP (pickle itself will not write it for a class that is not the object's).
_NEW_ARRAY = b"\x80\x02cnumpy\nndarray\nM0uM0u\x86\x85\x81."


@pytest.mark.parametrize(
    "payload, what",
    [
        (_Asks(bytes, 800_000_000), "bytes(...) asking for 800,000,000 elements"),
        (_Asks(bytearray, 800_000_000), "bytearray(...) asking for 800,000,000 elements"),
        (_Asks(list, range(10**9)), "range(...) asking for 1,000,000,000 elements"),
        (_NEW_ARRAY, "ndarray(...) asking for 900,000,000 elements"),
    ],
)
def test_small_pickles_asking_for_huge_objects_are_refused_before_allocating(tmp_path, payload, what):
    import tracemalloc

    path = tmp_path / "LSWMD.pkl"
    path.write_bytes(payload if isinstance(payload, bytes) else pickle.dumps(payload, protocol=2))
    assert path.stat().st_size < 100
    tracemalloc.start()
    try:
        with pytest.raises(UnsafePickleError, match=r"refused " + what.replace("(", r"\(").replace(")", r"\)")):
            list(WM811KReader().read(str(path)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
