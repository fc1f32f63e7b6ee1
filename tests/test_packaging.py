"""The built wheel carries the manifest, and npe2 finds the plugin in a clean environment."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    [built] = out.glob("napari_sff-*.whl")
    return built


def test_wheel_contains_manifest_as_a_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        manifest = archive.read("napari_sff/napari.yaml").decode()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert manifest == (ROOT / "napari.yaml").read_text()
    assert "napari-sff = napari_sff:napari.yaml" in entry_points
    assert "napari-sff = napari_sff.cli:main" in entry_points


def test_clean_venv_discovers_and_validates_the_plugin(wheel, tmp_path):
    """Only the wheel (without its heavy dependencies) and npe2 are installed: discovery needs no more."""
    env_dir = tmp_path / "clean"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
    subprocess.run([*pip, "npe2"], check=True)
    listing = subprocess.run([str(python), "-m", "npe2", "list", "--format", "json"], check=True,
                             capture_output=True, text=True).stdout
    assert '"napari-sff"' in listing
    result = subprocess.run([str(python), "-m", "npe2", "validate", "napari-sff"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout
