"""The one atomic writer: files follow the umask, nothing half-written is ever published, no clobbering."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from napari_sff import io


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_follow_the_umask(tmp_path, umask_022):
    path = io.atomic_write_text(tmp_path / "table.csv", "a,b\n")
    assert _mode(path) == 0o644
    os.umask(0o077)
    assert _mode(io.atomic_write_text(tmp_path / "private.json", "{}")) == 0o600


def test_nifti_written_by_the_project_is_readable_by_others(tmp_path, umask_022):
    volume = io.Volume.from_array(np.zeros((2, 3, 4), np.float32), (1.0, 1.0, 1.0))
    path = io.write_nifti(volume, tmp_path / "map.nii.gz")
    assert _mode(path) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["map.nii.gz"]  # no temporary file left behind


def test_failed_write_publishes_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), io.atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_no_overwrite_refuses_an_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(FileExistsError, match="exists"):
        io.atomic_write_text(target, "new", overwrite=False)
    assert target.read_text() == "old"


def test_directory_published_whole_and_replaced_only_when_asked(tmp_path, umask_022):
    target = tmp_path / "series"
    with io.atomic_directory(target) as tmp:
        (tmp / "1.dcm").write_bytes(b"x")
    assert _mode(target) == 0o755 and _mode(target / "1.dcm") == 0o644
    with pytest.raises(FileExistsError), io.atomic_directory(target):
        pass
    with io.atomic_directory(target, overwrite=True) as tmp:
        (tmp / "2.dcm").write_bytes(b"y")
    assert sorted(p.name for p in target.iterdir()) == ["2.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]
