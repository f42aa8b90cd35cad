"""Version discovery in a base directory, and a broken new version that must not take the old one down."""

import os
import shutil

import grpc
import pytest

from spanet.serving.errors import ServingError
from spanet.serving.model_manager import ModelManager, list_versions

pytestmark = pytest.mark.slow


def test_list_versions_counts_complete_integer_folders_only(tmp_path):
    for name, complete in (("7", True), ("12", True), ("30", False), ("tmp-40", True), (".staging-50", True)):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert list_versions(str(tmp_path)) == [7, 12]
    assert list_versions(str(tmp_path / "missing")) == []


def test_broken_new_version_is_reported_and_the_old_one_keeps_serving(source_base_dir, tmp_path, caplog):
    base = tmp_path / "spanet"
    shutil.copytree(source_base_dir, base)
    (old,) = list_versions(str(base))
    manager = ModelManager("spanet", str(base))
    with pytest.raises(ServingError) as raised:
        manager.get("spanet")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND  # nothing loaded yet
    assert manager.refresh() and manager.current_version == old
    broken = base / str(old + 1)
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    caplog.set_level("ERROR", logger="spanet.serving")
    assert not manager.refresh()
    assert not manager.refresh()  # not retried until its saved_model.pb changes
    assert manager.get("spanet").version == old
    (newest, state, error), (_, old_state, _) = manager.status("spanet")
    assert (newest, state, old_state) == (old + 1, 50, 30)  # END with its error; the old one AVAILABLE
    assert error
    assert len([r for r in caplog.records if f"failed to load version {old + 1}" in r.getMessage()]) == 1
    os.utime(broken / "saved_model.pb", (1, 1))
    assert not manager.refresh()
    assert len([r for r in caplog.records if "failed to load" in r.getMessage()]) == 2
