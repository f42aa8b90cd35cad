"""SEMI G85 files: the ASCII form and the XML form, with null / pass / fail bins."""

import numpy as np
import pytest

from spanet.data import DataInputError, G85Reader, RejectedRecord, WaferRecord
from spanet.data.formats.g85 import G85FormatError, parse_ascii, parse_xml

ASCII_MAP = """WAFER_MAP = {
WAFER_ID = "W07"
LOT_ID = "LOTA"
MAP_TYPE = "ASCII"
NULL_BIN = "."
ROWS = 3
COLUMNS = 4
FLAT_NOTCH = 180
BIN = "1" 5 "Pass"
BIN = "A" 1 "Fail"
BIN = "B" 1 "Fail"
MAP = {
".11."
"1AB1"
".11."
}
}
"""

XML_MAP = """<?xml version="1.0" encoding="UTF-8"?>
<Maps>
  <Map xmlns:semi="http://www.semi.org" WaferId="W08" FormatRevision="SEMI G85 0703">
    <Device ProductId="P1" LotId="LOTB" BinType="HexaDecimal" NullBin="FF" Rows="2" Columns="3">
      <Bin BinCode="01" BinCount="3" BinQuality="Pass"/>
      <Bin BinCode="0A" BinCount="1" BinQuality="Fail"/>
      <Data MapName="Map" MapVersion="1">
        <Row><![CDATA[FF 01 01]]></Row>
        <Row><![CDATA[01 0A FF]]></Row>
      </Data>
    </Device>
  </Map>
  <Map WaferId="W09">
    <Device LotId="LOTB" BinType="Decimal" NullBin="255" Rows="1" Columns="3">
      <Bin BinCode="1" BinQuality="Pass"/><Bin BinCode="0" BinQuality="Fail"/>
      <Data><Row>255 1 0</Row></Data>
    </Device>
  </Map>
</Maps>
"""


def test_ascii_form():
    m = parse_ascii(ASCII_MAP)
    assert m.die_map.tolist() == [[0, 1, 1, 0], [1, 2, 2, 1], [0, 1, 1, 0]]
    assert (m.wafer_id, m.lot_id) == ("W07", "LOTA")


def test_xml_form_hex_and_decimal_maps():
    maps = parse_xml(XML_MAP)
    assert [m.die_map.tolist() for m in maps] == [[[0, 1, 1], [1, 2, 0]], [[0, 1, 2]]]
    assert [(m.wafer_id, m.lot_id, m.product) for m in maps] == [("W08", "LOTB", "P1"), ("W09", "LOTB", "")]


@pytest.mark.parametrize(
    "text, match",
    [
        (ASCII_MAP.replace('"1AB1"', '"1AZ1"'), "unknown bin code 'Z' in row 2"),
        (ASCII_MAP.replace("ROWS = 3", "ROWS = 4"), "3 rows but ROWS = 4"),
        (ASCII_MAP.replace('"1AB1"', '"1AB"'), "row 2 has 3 dies but COLUMNS = 4"),
        (ASCII_MAP.replace('NULL_BIN = "."\n', ""), "NULL_BIN is missing"),
    ],
)
def test_ascii_errors_say_what_is_wrong(text, match):
    with pytest.raises(G85FormatError, match=match):
        parse_ascii(text)


def test_reader_labels_by_folder_and_quarantines_bad_files(tmp_path):
    (tmp_path / "Center").mkdir()
    (tmp_path / "Center" / "a.g85").write_text(ASCII_MAP)
    (tmp_path / "Loc").mkdir()
    (tmp_path / "Loc" / "b.xml").write_text(XML_MAP)
    (tmp_path / "Loc" / "c.xml").write_text("<Maps><Map><Device")
    (tmp_path / "Loc" / "d.g85").write_text(ASCII_MAP.replace('"1AB1"', '"1AZ1"'))
    (tmp_path / "Loc" / "e.g85").write_text(ASCII_MAP.replace('".11."', '"...."').replace('"1AB1"', '"...."'))
    results = list(G85Reader().read(str(tmp_path)))
    good = [r for r in results if isinstance(r, WaferRecord)]
    assert [(r.ref, r.label, r.lot_id, r.wafer_id, r.stage) for r in good] == [
        ("Center/a.g85", "Center", "LOTA", "W07", None),
        ("Loc/b.xml#0", "Loc", "LOTB", "W08", "P1"),
        ("Loc/b.xml#1", "Loc", "LOTB", "W09", None),
    ]
    assert np.array_equal(good[0].image, np.array([[0, 128, 128, 0], [128, 255, 255, 128], [0, 128, 128, 0]], np.uint8))
    bad = {r.ref: r.reason for r in results if isinstance(r, RejectedRecord)}
    assert set(bad) == {"Loc/c.xml", "Loc/d.g85", "Loc/e.g85"}
    assert "not well-formed XML" in bad["Loc/c.xml"] and "unknown bin code" in bad["Loc/d.g85"]
    assert "empty wafer map" in bad["Loc/e.g85"]


def test_folder_without_maps_is_unusable(tmp_path):
    with pytest.raises(DataInputError, match="no g85/xml/map file"):
        G85Reader().plan(str(tmp_path))
