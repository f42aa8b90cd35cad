"""MixedWM38 npz: 0/1/2 maps with 8-bit multi-hot labels, single-label and mixed modes."""

import numpy as np
import pytest

from spanet.data import DataInputError, MixedWM38Reader, RejectedRecord, RejectKind, WaferRecord, detect_format


def _npz(path, maps, labels, **extra):
    np.savez_compressed(path, np.asarray(maps, np.int64), np.asarray(labels, np.int64), **extra)
    return str(path)


def _maps(n):
    m = np.zeros((n, 6, 6), np.int64)
    m[:, 1:5, 1:5] = 1
    m[:, 2, 2] = 2
    return m


def test_single_and_mixed_labels(tmp_path):
    labels = [
        [0] * 8,
        [1, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 1, 0],
        [0, 0, 1, 0, 0, 0, 0, 1],
        [0, 0, 0, 1, 1, 0, 0, 0],
    ]
    maps = _maps(5)
    maps[1, 3, 3] = 7  # unknown die value
    path = _npz(tmp_path / "Wafer_Map_Datasets.npz", maps, labels)
    assert detect_format(path) == "npz" and detect_format(str(tmp_path)) == "npz"
    results = list(MixedWM38Reader().read(path))
    good = [r for r in results if isinstance(r, WaferRecord)]
    assert [r.label for r in good] == ["none", "Loc+Scratch", "Edge-Loc+Random", "Edge-Ring+Loc"]
    bad = [r for r in results if isinstance(r, RejectedRecord)]
    assert [(b.ref, b.label) for b in bad] == [("Wafer_Map_Datasets.npz#1", "Center")] and "unknown die value" in bad[
        0
    ].reason
    assert good[0].image[2, 2] == 255 and good[0].image[1, 1] == 128 and good[0].image[0, 0] == 0
    assert good[0].wafer_id == "0" and good[0].lot_id == "" and good[0].source == "npz"

    single = list(MixedWM38Reader(mixed=False).read(path))
    assert [r.label for r in single if isinstance(r, WaferRecord)] == ["none"]
    excluded = [r for r in single if isinstance(r, RejectedRecord) and r.kind == RejectKind.EXCLUDED]
    assert [r.label for r in excluded] == ["Loc+Scratch", "Edge-Loc+Random", "Edge-Ring+Loc"]


def test_extra_metadata_arrays_are_used(tmp_path):
    path = _npz(
        tmp_path / "m.npz",
        _maps(2),
        [[0] * 8, [0] * 8],
        lot_id=np.array(["A", "B"]),
        wafer_id=np.array(["1", "2"]),
        stage=np.array(["sort", ""]),
    )
    good = list(MixedWM38Reader().read(path))
    assert [(r.lot_id, r.wafer_id, r.stage) for r in good] == [("A", "1", "sort"), ("B", "2", None)]


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(DataInputError, match="arr_1"):
        MixedWM38Reader().plan(_npz(tmp_path / "a.npz", _maps(2), [[0] * 7, [0] * 7]))
    np.savez(tmp_path / "b.npz", arr_0=_maps(1))
    with pytest.raises(DataInputError, match="missing array 'arr_1'"):
        MixedWM38Reader().plan(str(tmp_path / "b.npz"))
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(DataInputError, match="not a readable npz"):
        MixedWM38Reader().plan(str(tmp_path / "c.npz"))
    np.savez(tmp_path / "d.npz", np.array([object()] * 2, dtype=object), np.zeros((2, 8)))
    with pytest.raises(DataInputError, match="pickles"):
        MixedWM38Reader().plan(str(tmp_path / "d.npz"))
