"""napari_sff.imports: torch's native library loaded without the GIL before torch is imported (the Predict widget's
preload), in fresh processes without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")

LOAD_THEN_IMPORT = """
import json, sys
from napari_sff.imports import TORCH_NATIVE_LIBRARY, native_library_path, open_torch_library

def mapped():
    return sorted({line.split()[-1] for line in open("/proc/self/maps") if "libtorch_cpu" in line})

path = native_library_path("torch", TORCH_NATIVE_LIBRARY)
before = mapped()
opened = open_torch_library()
after_open = mapped()
torch_after_open = "torch" in sys.modules
import torch
print(json.dumps(dict(path=str(path), before=before, opened=opened, after_open=after_open,
                      torch_after_open=torch_after_open, after_import=mapped(),
                      sum=float(torch.ones(3).sum()), again=open_torch_library())))
"""

#: The main thread counts its turns while another thread loads libtorch_cpu, ours or with ctypes.CDLL (which, like
#: an extension module's import, holds the GIL through dlopen and the library's static initialisers).
TURNS_DURING_LOAD = """
import ctypes, json, sys, threading, time
from napari_sff.imports import TORCH_NATIVE_LIBRARY, native_library_path, open_native_library

path = native_library_path("torch", TORCH_NATIVE_LIBRARY)
span, finished = {}, threading.Event()

def load():
    span["start"] = time.perf_counter()
    if sys.argv[1] == "open_native_library":
        assert open_native_library(path)
    else:
        ctypes.CDLL(str(path))
    span["end"] = time.perf_counter()
    finished.set()

turns = []
threading.Thread(target=load).start()
while not finished.is_set():
    turns.append(time.perf_counter())
    time.sleep(0.0005)
during = [t for t in turns if span["start"] <= t <= span["end"]]
print(json.dumps(dict(seconds=span["end"] - span["start"], turns=len(during))))
"""


def run_fresh(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_torch_library_is_loaded_before_the_import_and_the_import_uses_that_copy():
    result = run_fresh(LOAD_THEN_IMPORT)
    assert result["before"] == [] and result["opened"] and not result["torch_after_open"]
    assert result["after_open"] == [result["path"]]
    assert result["after_import"] == [result["path"]]  # one copy: the import found it loaded
    assert result["sum"] == 3.0
    assert result["again"] is False  # torch imported: nothing to do


def test_loading_torch_library_leaves_the_gil_to_other_threads_unlike_ctypes_cdll():
    """The reason for the function: a GUI thread keeps running while the library loads. The control (ctypes.CDLL,
    GIL held as by an import) shows that the count can tell the two apart on this machine."""
    ours = run_fresh(TURNS_DURING_LOAD, "open_native_library")
    held = run_fresh(TURNS_DURING_LOAD, "ctypes.CDLL")
    print(ours, held)
    assert held["seconds"] > 0.02, "the load was too quick to tell anything here"
    ours_rate, held_rate = ours["turns"] / ours["seconds"], held["turns"] / held["seconds"]
    assert ours_rate > 200, f"the main thread ran only {ours_rate:.0f} turns/s during the load"
    assert held_rate < ours_rate / 5, f"control: {held_rate:.0f} turns/s with the GIL held, ours {ours_rate:.0f}"


def test_no_library_is_found_for_a_package_without_one_or_a_missing_package():
    from napari_sff.imports import native_library_path

    assert native_library_path("json", "torch_cpu") is None
    assert native_library_path("no_such_package_here", "torch_cpu") is None


def test_a_library_that_cannot_be_loaded_is_reported_as_false(tmp_path):
    from napari_sff.imports import open_native_library

    broken = tmp_path / "libbroken.so"
    broken.write_bytes(b"not an ELF file")
    assert open_native_library(broken) is False
    assert open_native_library(tmp_path / "missing.so") is False
