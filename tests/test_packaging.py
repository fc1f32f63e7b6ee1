"""The built wheel carries the manifest, and npe2 finds the plugin in a clean environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_build(tmp_path_factory) -> tuple[Path, str]:
    """The wheel and the build's log (verbose, so setuptools' warnings are in it)."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    [built] = out.glob("napari_sff-*.whl")
    return built, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(wheel_build) -> Path:
    return wheel_build[0]


def test_wheel_carries_weights_and_every_subpackage_without_setuptools_warnings(wheel_build):
    built, log = wheel_build
    with zipfile.ZipFile(built) as archive:
        names = set(archive.namelist())
    shipped = {f"napari_sff/weights/{p.name}" for p in (ROOT / "napari_sff" / "weights").glob("*.safetensors")}
    assert {"napari_sff/weights/unet.safetensors", "napari_sff/weights/ddpm.safetensors"} <= shipped <= names
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "napari_sff").rglob("*.py")}
    assert {"napari_sff/io/__init__.py", "napari_sff/io/dicom/__init__.py"} <= sources <= names
    assert "napari_sff/napari.yaml" in names
    assert "is absent from the `packages` configuration" not in log
    assert "Package would be ignored" not in log


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


@pytest.mark.parametrize("module", ["napari_sff.demo", "napari_sff.cli"])
def test_help_names_only_options_that_exist(module):
    """Every ``--option`` the help text mentions (description included) is one the parser defines."""
    env = {**os.environ, "COLUMNS": "500"}  # no wrapping, so no option name is split across lines
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=env,
                            cwd=ROOT, check=True)
    text = result.stdout
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    usage = text.split("\n\n", 1)[0]  # argparse writes the usage line from the parser itself
    defined = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", usage)) | {"--help"}
    assert "--screenshot" in defined or module != "napari_sff.demo"
    assert named <= defined, f"{module} --help names options it does not have: {sorted(named - defined)}"
