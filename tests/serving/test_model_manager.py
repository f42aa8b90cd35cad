"""Version discovery in a base directory, a broken new version that must not take the old one down, and
versions that fail to load at first (a partial copy, a transient failure) being retried until they load."""

import os
import shutil
import time

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
    assert not manager.refresh()  # not retried at once: it waits, unless its files change
    assert manager.get("spanet").version == old
    (newest, state, error), (_, old_state, _) = manager.status("spanet")
    assert (newest, state, old_state) == (old + 1, 50, 30)  # END with its error; the old one AVAILABLE
    assert error
    assert len([r for r in caplog.records if f"failed to load version {old + 1}" in r.getMessage()]) == 1
    os.utime(broken / "saved_model.pb", (1, 1))
    assert not manager.refresh()
    assert len([r for r in caplog.records if "failed to load" in r.getMessage()]) == 2


def _variables_data(version_dir):
    (data,) = [p for p in (version_dir / "variables").iterdir() if p.name.startswith("variables.data")]
    return data


def test_version_whose_first_copy_was_partial_is_loaded_once_the_copy_completes(source_base_dir, tmp_path, caplog):
    """A copy that stopped half-way (saved_model.pb there, variables cut short), completed later: it loads."""
    base = tmp_path / "spanet"
    shutil.copytree(source_base_dir, base)
    (old,) = list_versions(str(base))
    manager = ModelManager("spanet", str(base))
    assert manager.refresh() and manager.current_version == old
    new = base / str(old + 1)
    shutil.copytree(base / str(old), new)
    full = _variables_data(new).read_bytes()
    _variables_data(new).write_bytes(full[: len(full) // 2])  # the first copy stopped half-way
    caplog.set_level("INFO", logger="spanet.serving")
    assert not manager.refresh()
    assert manager.current_version == old
    (newest, state, error), _ = manager.status("spanet")
    assert (newest, state) == (old + 1, 50) and error  # END, with why
    _variables_data(new).write_bytes(full)  # the copy completes; saved_model.pb is untouched
    assert manager.refresh()
    assert manager.current_version == old + 1
    assert manager.status("spanet")[0] == (old + 1, 30, "")  # AVAILABLE
    assert len([r for r in caplog.records if f"failed to load version {old + 1}" in r.getMessage()]) == 1
    assert any(
        r.getMessage().startswith(f"model spanet: loaded version {old + 1}")
        and "after 1 failed attempts" in r.getMessage()
        for r in caplog.records
    )


def test_version_that_failed_to_load_with_nothing_changed_is_retried_after_a_wait(source_base_dir, tmp_path, caplog):
    """A transient failure (here the first warm-up of the new version) is retried once the wait has passed."""
    base = tmp_path / "spanet"
    shutil.copytree(source_base_dir, base)
    (old,) = list_versions(str(base))
    warmed = []

    def warm_up(servable) -> None:
        warmed.append(servable.version)
        if servable.version == old + 1 and warmed.count(old + 1) == 1:
            raise RuntimeError("warm-up failed: the disk was busy")

    poll_s = 2.0  # the first retry comes one poll interval after the failure
    manager = ModelManager("spanet", str(base), poll_s, warm_up)
    assert manager.refresh()
    shutil.copytree(base / str(old), base / str(old + 1))
    caplog.set_level("ERROR", logger="spanet.serving")
    assert not manager.refresh()
    failed_at = time.monotonic()
    assert not manager.refresh() and warmed.count(old + 1) == 1  # within the wait: not tried again
    time.sleep(max(0.0, poll_s - (time.monotonic() - failed_at)) + 0.1)
    assert manager.refresh()
    assert manager.current_version == old + 1 and warmed.count(old + 1) == 2
    assert [r.getMessage().split(" (retrying")[0] for r in caplog.records] == [
        f"model spanet: failed to load version {old + 1} from {base}"
    ]
