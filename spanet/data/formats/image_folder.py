"""Image folders (format ``png``): PNG / JPEG, grey or RGB, any size, one sub-folder per class,
optionally a manifest CSV (path,label,lot,wafer,stage). Also the writer of wafer maps as PNG folders."""

import os
from dataclasses import dataclass
from typing import ClassVar, Iterable, Iterator, Optional

from PIL import Image

from spanet.data.formats.base import Reader, ReadPlan, Shard, require_path
from spanet.data.formats.folders import plan_folder, safe_name, write_manifest
from spanet.data.formats.outputs import atomic_dir
from spanet.data.imageio import encode_png, oversize_reason, pil_to_array
from spanet.data.progress import progress
from spanet.data.records import ReadResult, RejectedRecord, WaferRecord

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ImageFolderReader(Reader):
    """Reads an image folder; `manifest` is a CSV path (relative to the folder) or None for auto-detection."""

    manifest: Optional[str] = None
    files_per_shard: int = 256
    #: False: files with a mixed-type label (``Center+Loc``) are left out, counted as excluded.
    mixed: bool = True
    #: Images declaring a larger side are quarantined from their header, before decoding (the
    #: pipeline sets the schema's bound; every image is also held to imageio.MAX_DECODED_PIXELS).
    max_side: Optional[int] = None
    name: ClassVar[str] = "png"

    def plan(self, path: str) -> ReadPlan:
        return plan_folder(
            require_path(path, "image folder"), IMAGE_EXTENSIONS, self.manifest, self.files_per_shard, self.mixed
        )

    def read_shard(self, shard: Shard) -> Iterator[ReadResult]:
        for entry in shard.entries:
            try:
                with Image.open(entry.path) as img:  # reads the header only
                    reason = oversize_reason(*img.size, max_side=self.max_side)
                    if not reason:
                        img.load()
                        image, reason = pil_to_array(img)
            except Exception as exc:  # corrupt / truncated / not an image
                yield RejectedRecord(entry.ref, f"cannot decode image: {type(exc).__name__}: {exc}", label=entry.label)
                continue
            if not reason and image.size == 0:
                reason = "empty image (zero pixels)"
            if reason:
                yield RejectedRecord(entry.ref, reason, label=entry.label)
                continue
            yield WaferRecord(
                image=image,
                label=entry.label,
                lot_id=entry.lot_id,
                wafer_id=entry.wafer_id,
                stage=entry.stage,
                source=self.name,
                ref=entry.ref,
            )


def write_image_folder(
    records: Iterable[WaferRecord], out_dir: str, total: Optional[int] = None, show_progress: bool = False
) -> int:
    """Write records as ``out_dir/<label>/<n>_<lot>_<wafer>.png`` plus ``manifest.csv``; returns the count.

    All or nothing: the folder appears only when every file is written.
    """
    rows = []
    with atomic_dir(out_dir) as tmp:
        for n, rec in enumerate(progress(records, total=total, desc="png", enabled=show_progress)):
            rel = (
                f"{safe_name(rec.label)}/{n:07d}_{safe_name(rec.lot_id or 'nolot')}_"
                f"{safe_name(rec.wafer_id or str(n))}.png"
            )
            os.makedirs(os.path.join(tmp, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "wb") as fh:
                fh.write(encode_png(rec.image))
            rows.append((rel, rec.label, rec.lot_id, rec.wafer_id, rec.stage or ""))
        write_manifest(tmp, rows)
    return len(rows)
