"""Image folders: PNG / JPEG, grey / RGB, class folders or a manifest, corrupt files quarantined."""

import numpy as np
import pytest
from PIL import Image

from spanet.data import DataInputError, ImageFolderReader, RejectedRecord, RejectKind, WaferRecord, read_records


def _split(results):
    results = list(results)
    good = [r for r in results if isinstance(r, WaferRecord)]
    bad = [r for r in results if isinstance(r, RejectedRecord)]
    return good, bad


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "scratch").mkdir()
    (tmp_path / "particle").mkdir()
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    rgb = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "scratch" / "a.png")
    Image.fromarray(rgb).save(tmp_path / "particle" / "b.PNG")
    smooth = np.stack(np.meshgrid(np.arange(12) * 20, np.arange(16) * 15) + [np.full((16, 12), 90)], -1).astype(
        np.uint8
    )
    Image.fromarray(smooth).save(tmp_path / "particle" / "c.jpg", quality=95)
    (tmp_path / "particle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "particle" / "notes.txt").write_text("ignored")
    return tmp_path, grey, rgb, smooth


def test_class_folders_grey_rgb_jpeg_and_a_corrupt_file(folder):
    root, grey, rgb, smooth = folder
    good, bad = _split(ImageFolderReader().read(str(root)))
    by_ref = {r.ref: r for r in good}
    assert sorted(by_ref) == ["particle/b.PNG", "particle/c.jpg", "scratch/a.png"]
    assert np.array_equal(by_ref["scratch/a.png"].image, grey) and by_ref["scratch/a.png"].label == "scratch"
    assert np.array_equal(by_ref["particle/b.PNG"].image, rgb) and by_ref["particle/b.PNG"].original_shape == (16, 12)
    jpeg = by_ref["particle/c.jpg"].image
    assert jpeg.shape == (16, 12, 3) and np.abs(jpeg.astype(int) - smooth).mean() < 4  # lossy source, decoded pixels
    assert all(r.source == "png" and r.lot_id == "" and r.stage is None for r in good)
    assert [(b.ref, b.kind, b.label) for b in bad] == [("particle/broken.png", RejectKind.INVALID, "particle")]
    assert "cannot decode image" in bad[0].reason


def test_manifest_gives_labels_lots_and_stage(folder):
    root, grey, _, _ = folder
    (root / "list.csv").write_text(
        "path,label,lot,wafer,stage\n"
        "scratch/a.png,Scratch,L1,3,AEI\n"
        "particle/b.PNG,Particle,L2,4,\n"
        "particle/missing.png,Particle,L2,5,ADI\n"
        "particle/c.jpg,,L2,6,ADI\n"
    )
    good, bad = _split(read_records(str(root), "png", manifest="list.csv"))
    assert [(r.ref, r.label, r.lot_id, r.wafer_id, r.stage) for r in good] == [
        ("scratch/a.png", "Scratch", "L1", "3", "AEI"),
        ("particle/b.PNG", "Particle", "L2", "4", None),
    ]
    assert {(b.ref, b.kind) for b in bad} == {
        ("particle/missing.png", RejectKind.INVALID),
        ("particle/c.jpg", RejectKind.UNLABELLED),
    }
    assert "does not exist" in next(b.reason for b in bad if b.ref == "particle/missing.png")


def test_unusable_inputs_raise_one_clear_error(tmp_path):
    with pytest.raises(DataInputError, match="does not exist"):
        list(ImageFolderReader().read(str(tmp_path / "nope")))
    with pytest.raises(DataInputError, match="holds no png/jpg/jpeg file"):
        list(ImageFolderReader().read(str(tmp_path)))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DataInputError, match="no readable record"):
        list(ImageFolderReader().read(str(tmp_path)))
    (tmp_path / "manifest.csv").write_text("file,class\n")
    with pytest.raises(DataInputError, match="missing column"):
        list(ImageFolderReader().read(str(tmp_path)))


def _png_header_only(width, height):
    """A PNG that declares width x height grey pixels but holds one row of data: decoding it would
    allocate the whole image (or fail), reading its header costs nothing."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "width, height, max_side, expected",
    [
        (9000, 9000, 4096, "declares 9000x9000 pixels, more than 4096 a side; not decoded"),
        (8193, 8193, None, "declares 8193x8193 pixels, more than 67,108,864 in all; not decoded"),
    ],
)
def test_oversized_images_are_quarantined_from_their_header(tmp_path, width, height, max_side, expected):
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "bomb.png").write_bytes(_png_header_only(width, height))
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(tmp_path / "big" / "fine.png")
    good, bad = _split(ImageFolderReader(max_side=max_side).read(str(tmp_path)))
    assert [r.ref for r in good] == ["big/fine.png"]
    assert [(b.ref, b.reason) for b in bad] == [("big/bomb.png", expected)]


def test_decode_image_refuses_an_oversized_header_before_decoding():
    from spanet.data.imageio import decode_image

    with pytest.raises(ValueError, match="declares 8193x8193 pixels"):
        decode_image(_png_header_only(8193, 8193))
