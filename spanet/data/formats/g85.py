"""SEMI G85 wafer map files (format ``g85``): the ASCII form (``WAFER_MAP = { ... MAP = { rows } }``)
and the XML form (``<Maps><Map><Device BinType NullBin Rows Columns><Bin .../><Data><Row>``).

Dies are classified by their bin's quality: the null bin is off-wafer, ``Pass`` bins pass, every
other declared bin fails. G85 carries no defect class, so files sit in class folders or are
labelled by a manifest (see `folders`); lot / wafer ids come from the file unless the manifest sets them.
"""

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import ClassVar, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from spanet.data.classes import FAIL_DIE, OFF_WAFER_DIE, PASS_DIE
from spanet.data.convention import check_die_map, die_map_to_image, image_to_die_map
from spanet.data.formats.base import Reader, ReadPlan, Shard, require_path
from spanet.data.formats.folders import plan_folder, safe_name, write_manifest
from spanet.data.formats.outputs import atomic_dir
from spanet.data.progress import progress
from spanet.data.records import ReadResult, RejectedRecord, WaferRecord

G85_EXTENSIONS = (".g85", ".xml", ".map")
ASCII_NULL, ASCII_PASS, ASCII_FAIL = ".", "1", "X"
XML_NULL, XML_PASS, XML_FAIL = "255", "1", "0"


@dataclass
class G85Map:
    """One parsed map: die states (0/1/2), its ids, and the product when the file names one."""

    die_map: np.ndarray
    wafer_id: str = ""
    lot_id: str = ""
    product: str = ""


class G85FormatError(ValueError):
    """A G85 file (or one map in it) that cannot be decoded; the message says where and why."""


def _classify(codes: Sequence[Sequence[str]], null_bin: str, bins: Dict[str, str], rows: int, cols: int) -> np.ndarray:
    """Turn a grid of bin codes into die states using the null bin and each bin's quality."""
    if len(codes) != rows:
        raise G85FormatError(f"map has {len(codes)} rows but ROWS = {rows}")
    lookup = {null_bin: OFF_WAFER_DIE}
    for code, quality in bins.items():
        if code != null_bin:
            lookup[code] = PASS_DIE if quality.lower() == "pass" else FAIL_DIE
    out = np.empty((rows, cols), dtype=np.uint8)
    for r, row in enumerate(codes):
        if len(row) != cols:
            raise G85FormatError(f"row {r + 1} has {len(row)} dies but COLUMNS = {cols}")
        try:
            out[r] = [lookup[c] for c in row]
        except KeyError:
            bad = next(c for c in row if c not in lookup)
            raise G85FormatError(
                f"unknown bin code {bad!r} in row {r + 1} (declared: null {null_bin!r}, bins {sorted(bins)})"
            ) from None
    return out


_KEY_VALUE = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*(.*?)\s*$")
_BIN_LINE = re.compile(r'^"?([^"\s]+)"?\s+(\d+)\s+"?([A-Za-z]+)"?')


def parse_ascii(text: str) -> G85Map:
    """Parse the ASCII form of one G85 map (one character per die; rows may be quoted)."""
    header: Dict[str, str] = {}
    bins: Dict[str, str] = {}
    rows: List[str] = []
    lines = text.splitlines()
    if not any(line.strip().upper().startswith("WAFER_MAP") for line in lines[:5]):
        raise G85FormatError("not a G85 ASCII map (no 'WAFER_MAP = {' header)")
    in_map = False
    for line in lines:
        stripped = line.strip()
        if in_map:
            if stripped.startswith("}"):
                in_map = False
            elif stripped:
                rows.append(stripped.strip('"'))
            continue
        m = _KEY_VALUE.match(line)
        if not m:
            continue
        key, value = m.group(1).upper(), m.group(2)
        if key == "MAP" and value.startswith("{"):
            in_map = True
        elif key == "BIN":
            b = _BIN_LINE.match(value)
            if not b:
                raise G85FormatError(f"malformed BIN line: {stripped!r}")
            bins[b.group(1)] = b.group(3)
        elif key != "WAFER_MAP":
            header[key] = value.strip('"')
    for key in ("NULL_BIN", "ROWS", "COLUMNS"):
        if key not in header:
            raise G85FormatError(f"header field {key} is missing")
    try:
        n_rows, n_cols = int(header["ROWS"]), int(header["COLUMNS"])
    except ValueError:
        raise G85FormatError(
            f"ROWS / COLUMNS must be integers, got {header['ROWS']!r} / {header['COLUMNS']!r}"
        ) from None
    die_map = _classify([list(r) for r in rows], header["NULL_BIN"], bins, n_rows, n_cols)
    return G85Map(die_map, header.get("WAFER_ID", ""), header.get("LOT_ID", ""), header.get("PRODUCT_ID", ""))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _split_row(text: str, bin_type: str) -> List[str]:
    text = text.strip()
    if bin_type == "ascii":
        return list(text)
    tokens = text.split()
    if bin_type == "hexadecimal":
        if len(tokens) == 1 and len(text) % 2 == 0 and len(text) > 2:
            tokens = [text[i : i + 2] for i in range(0, len(text), 2)]
        return [str(int(t, 16)) for t in tokens]
    return [str(int(t)) for t in tokens]  # Decimal, Integer2


def parse_xml(text: str) -> List[G85Map]:
    """Parse the XML form: every ``<Map>`` of a ``<Maps>`` document (BinType ASCII, Decimal, HexaDecimal, Integer2)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise G85FormatError(f"not well-formed XML: {exc}") from None
    maps = [root] if _local(root.tag) == "Map" else [e for e in root if _local(e.tag) == "Map"]
    if not maps:
        raise G85FormatError("no <Map> element (expected <Maps><Map>...)")
    out = []
    for k, map_el in enumerate(maps):
        device = next((e for e in map_el if _local(e.tag) == "Device"), None)
        if device is None:
            raise G85FormatError(f"map {k + 1}: no <Device> element")
        attrs = device.attrib
        bin_type = attrs.get("BinType", "ASCII").lower()
        if bin_type not in ("ascii", "decimal", "hexadecimal", "integer2"):
            raise G85FormatError(f"map {k + 1}: unsupported BinType {attrs.get('BinType')!r}")
        try:
            n_rows, n_cols = int(attrs["Rows"]), int(attrs["Columns"])
            null_bin = attrs["NullBin"]
        except (KeyError, ValueError) as exc:
            raise G85FormatError(f"map {k + 1}: <Device> needs integer Rows, Columns and a NullBin ({exc})") from None
        norm = (
            (lambda c: c)
            if bin_type == "ascii"
            else (lambda c: str(int(c, 16) if bin_type == "hexadecimal" else int(c)))
        )
        try:
            null_bin = norm(null_bin)
            bins = {
                norm(b.attrib["BinCode"]): b.attrib.get("BinQuality", "Fail") for b in device if _local(b.tag) == "Bin"
            }
            data = next((e for e in device if _local(e.tag) == "Data"), None)
            rows = [] if data is None else [_split_row(r.text or "", bin_type) for r in data if _local(r.tag) == "Row"]
        except (KeyError, ValueError) as exc:
            raise G85FormatError(f"map {k + 1}: malformed bin code ({exc})") from None
        try:
            die_map = _classify(rows, null_bin, bins, n_rows, n_cols)
        except G85FormatError as exc:
            raise G85FormatError(f"map {k + 1}: {exc}") from None
        out.append(
            G85Map(die_map, map_el.attrib.get("WaferId", ""), attrs.get("LotId", ""), attrs.get("ProductId", ""))
        )
    return out


def parse_g85(text: str) -> List[G85Map]:
    """Parse a G85 file's text in either form."""
    return parse_xml(text) if text.lstrip().startswith("<") else [parse_ascii(text)]


@dataclass(frozen=True)
class G85Reader(Reader):
    """Reads a folder of G85 files (ASCII or XML), labelled by class sub-folder or a manifest CSV."""

    manifest: Optional[str] = None
    files_per_shard: int = 256
    #: False: files with a mixed-type label (``Center+Loc``) are left out, counted as excluded.
    mixed: bool = True
    name: ClassVar[str] = "g85"

    def plan(self, path: str) -> ReadPlan:
        return plan_folder(
            require_path(path, "G85 folder"), G85_EXTENSIONS, self.manifest, self.files_per_shard, self.mixed
        )

    def planned_labels(self, plan: ReadPlan) -> Optional[List[Tuple[str, str]]]:
        """(label, split key) per wafer: a G85 file may hold several wafers and names its own lot, so the
        files are parsed as the read parses them; files that do not parse are not listed."""
        return [
            (r.label, r.split_key)
            for shard in plan.shards
            for r in self.read_shard(shard)
            if isinstance(r, WaferRecord)
        ]

    def read_shard(self, shard: Shard) -> Iterator[ReadResult]:
        for entry in shard.entries:
            try:
                with open(entry.path, "r", encoding="utf-8", errors="strict") as fh:
                    maps = parse_g85(fh.read())
            except (G85FormatError, UnicodeDecodeError, OSError) as exc:
                yield RejectedRecord(entry.ref, f"G85: {exc}", label=entry.label)
                continue
            for k, parsed in enumerate(maps):
                ref = entry.ref if len(maps) == 1 else f"{entry.ref}#{k}"
                reason = check_die_map(parsed.die_map)
                if reason:
                    yield RejectedRecord(ref, reason, label=entry.label)
                    continue
                yield WaferRecord(
                    image=die_map_to_image(parsed.die_map),
                    label=entry.label,
                    lot_id=entry.lot_id or parsed.lot_id,
                    wafer_id=entry.wafer_id or parsed.wafer_id,
                    stage=entry.stage or parsed.product or None,
                    source=self.name,
                    ref=ref,
                )


def _bin_counts(die_map: np.ndarray) -> Tuple[int, int]:
    return int((die_map == PASS_DIE).sum()), int((die_map == FAIL_DIE).sum())


def format_ascii(die_map: np.ndarray, wafer_id: str, lot_id: str) -> str:
    """One map in the ASCII form: null ``.``, pass bin ``1``, fail bin ``X``."""
    n_pass, n_fail = _bin_counts(die_map)
    chars = np.array([ASCII_NULL, ASCII_PASS, ASCII_FAIL])[die_map]
    lines = [
        "WAFER_MAP = {",
        f'WAFER_ID = "{wafer_id}"',
        f'LOT_ID = "{lot_id}"',
        'MAP_TYPE = "ASCII"',
        f'NULL_BIN = "{ASCII_NULL}"',
        f"ROWS = {die_map.shape[0]}",
        f"COLUMNS = {die_map.shape[1]}",
        "FLAT_NOTCH = 180",
        f'BIN = "{ASCII_PASS}" {n_pass} "Pass"',
        f'BIN = "{ASCII_FAIL}" {n_fail} "Fail"',
        "MAP = {",
    ]
    lines += ["".join(row) for row in chars]
    lines += ["}", "}", ""]
    return "\n".join(lines)


def format_xml(die_map: np.ndarray, wafer_id: str, lot_id: str) -> str:
    """One map in the XML form (BinType Decimal, NullBin 255, pass bin 1, fail bin 0)."""
    n_pass, n_fail = _bin_counts(die_map)
    codes = np.array([f"{int(XML_NULL):03d}", f"{int(XML_PASS):03d}", f"{int(XML_FAIL):03d}"])[die_map]
    q = lambda s: s.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")  # noqa: E731
    rows = "\n".join(f"        <Row><![CDATA[{' '.join(r)}]]></Row>" for r in codes)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Maps>\n'
        f'  <Map xmlns:semi="http://www.semi.org" WaferId="{q(wafer_id)}" FormatRevision="SEMI G85 0703">\n'
        f'    <Device LotId="{q(lot_id)}" BinType="Decimal" NullBin="{XML_NULL}" Rows="{die_map.shape[0]}" '
        f'Columns="{die_map.shape[1]}" Orientation="0" OriginLocation="0">\n'
        f'      <Bin BinCode="{XML_PASS}" BinCount="{n_pass}" BinQuality="Pass" BinDescription="pass"/>\n'
        f'      <Bin BinCode="{XML_FAIL}" BinCount="{n_fail}" BinQuality="Fail" BinDescription="fail"/>\n'
        f'      <Data MapName="Map" MapVersion="1">\n{rows}\n      </Data>\n    </Device>\n  </Map>\n</Maps>\n'
    )


def write_g85(
    records: Iterable[WaferRecord],
    out_dir: str,
    form: str = "ascii",
    total: Optional[int] = None,
    show_progress: bool = False,
) -> int:
    """Write one G85 file per wafer map (`form` ``ascii`` -> .g85, ``xml`` -> .xml) in class folders + manifest."""
    if form not in ("ascii", "xml"):
        raise ValueError(f"G85 form must be 'ascii' or 'xml', got {form!r}")
    ext, fmt = (".g85", format_ascii) if form == "ascii" else (".xml", format_xml)
    rows = []
    with atomic_dir(out_dir) as tmp:
        for n, rec in enumerate(progress(records, total=total, desc=f"g85-{form}", enabled=show_progress)):
            rel = (
                f"{safe_name(rec.label)}/{n:07d}_{safe_name(rec.lot_id or 'nolot')}_"
                f"{safe_name(rec.wafer_id or str(n))}{ext}"
            )
            os.makedirs(os.path.join(tmp, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "w", encoding="utf-8", newline="\n") as fh:
                fh.write(fmt(image_to_die_map(rec.image), rec.wafer_id, rec.lot_id))
            rows.append((rel, rec.label, rec.lot_id, rec.wafer_id, rec.stage or ""))
        write_manifest(tmp, rows)
    return len(rows)
