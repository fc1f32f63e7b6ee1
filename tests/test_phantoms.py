"""The independent phantom family (training/phantoms): EPG known answers, acquisition, truth, files, independence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.phantoms import cpmg_echoes, make_case, tse, tse_echoes
from training.phantoms.case import case_seed
from training.phantoms.tissues import TISSUE_IDS

ROOT = Path(__file__).resolve().parents[1]


def _rotate(m: np.ndarray, angle: float, axis_phase: float) -> np.ndarray:
    """Rotate isochromats m (N, 3) by ``angle`` about the transverse axis at ``axis_phase`` (Rodrigues)."""
    k = np.array([np.cos(axis_phase), np.sin(axis_phase), 0.0])
    return (m * np.cos(angle) + np.cross(k, m) * np.sin(angle)
            + np.outer(m @ k, k) * (1 - np.cos(angle)))


def _isochromat_train(t1, t2, esp, etl, alpha_deg, mz=1.0, spins=720):
    """Reference: many isochromats dephased uniformly by one crusher per half echo spacing (a direct Bloch
    simulation with 3x3 rotations), excitation about x, refocusing about y. Returns |echo| per echo, final Mz."""
    psi = 2 * np.pi * np.arange(spins) / spins
    m = np.zeros((spins, 3))
    m[:, 2] = mz
    m = _rotate(m, np.pi / 2, 0.0)
    e1, e2 = np.exp(-(esp / 2) / t1), np.exp(-(esp / 2) / t2)

    def half(m):
        m = m.copy()
        m[:, :2] *= e2
        m[:, 2] = m[:, 2] * e1 + (1 - e1)
        c, s = np.cos(psi), np.sin(psi)
        return np.stack([c * m[:, 0] - s * m[:, 1], s * m[:, 0] + c * m[:, 1], m[:, 2]], axis=1)

    echoes = []
    for _ in range(etl):
        m = half(m)
        m = _rotate(m, np.deg2rad(alpha_deg), np.pi / 2)
        m = half(m)
        echoes.append(abs(m[:, 0].mean() + 1j * m[:, 1].mean()))
    return np.array(echoes), m[:, 2].mean()


def test_ideal_refocusing_decays_with_t2_only():
    esp, t2 = 11.0, 45.0
    echoes, _ = cpmg_echoes(np.inf, t2, esp_ms=esp, etl=10, refocus_deg=180.0)
    np.testing.assert_allclose(np.abs(echoes), np.exp(-np.arange(1, 11) * esp / t2), rtol=1e-10)
    with_t1, _ = cpmg_echoes(300.0, t2, esp_ms=esp, etl=10, refocus_deg=180.0)  # T1 cannot matter at 180 deg
    np.testing.assert_allclose(np.abs(with_t1), np.abs(echoes), rtol=1e-10)


def test_low_flip_first_echoes_follow_the_stimulated_echo_pattern():
    """Without relaxation: echo 1 = sin^2(a/2) (spin echo), echo 2 = sin^4(a/2) + sin^2(a)/2 (spin echo twice
    refocused plus the stimulated echo, in phase under CPMG) -- Hennig, JMR 1988;78:397."""
    for alpha in (120.0, 150.0):
        a = np.deg2rad(alpha)
        echoes, _ = cpmg_echoes(np.inf, np.inf, esp_ms=10.0, etl=3, refocus_deg=alpha)
        assert abs(echoes[0]) == pytest.approx(np.sin(a / 2) ** 2, abs=1e-12)
        assert abs(echoes[1]) == pytest.approx(np.sin(a / 2) ** 4 + 0.5 * np.sin(a) ** 2, abs=1e-12)


def test_epg_matches_a_direct_isochromat_simulation():
    t1, t2, esp, etl, alpha = 800.0, 60.0, 12.0, 8, 130.0
    reference, mz = _isochromat_train(t1, t2, esp, etl, alpha)
    echoes, z = cpmg_echoes(t1, t2, esp_ms=esp, etl=etl, refocus_deg=alpha)
    np.testing.assert_allclose(np.abs(echoes), reference, atol=1e-9)
    assert z == pytest.approx(mz, abs=1e-9)
    assert np.abs(echoes)[1] > np.exp(-2 * esp / t2)  # stimulated echoes slow the decay below 180 deg


def test_steady_state_matches_many_repetitions():
    t1, t2, esp, etl, alpha, tr = 1200.0, 40.0, 10.0, 6, 140.0, 900.0
    mz = 1.0
    for _ in range(40):  # spoil after each train, recover until the next excitation
        reference, end = _isochromat_train(t1, t2, esp, etl, alpha, mz=mz, spins=360)
        mz = 1 - (1 - end) * np.exp(-(tr - etl * esp) / t1)
    steady = tse_echoes(t1, t2, tr_ms=tr, esp_ms=esp, etl=etl, refocus_deg=alpha)
    np.testing.assert_allclose(steady, reference, rtol=1e-6)
    first = np.abs(cpmg_echoes(t1, t2, esp_ms=esp, etl=etl, refocus_deg=alpha)[0])
    assert steady[0] < 0.75 * first[0]  # short TR: T1 saturation is in the signal


def test_centre_line_comes_from_the_effective_echo():
    echo = tse.line_echoes(64, etl=8, n_eff=6)
    ky = np.fft.fftfreq(64, 1 / 64).astype(int)
    assert echo[ky == 0][0] == 6
    for k in range(1, 32):
        assert echo[ky == k][0] == echo[ky == -k][0]
    assert sorted(set(echo)) == list(range(1, 9))
    # further from the centre, further from the effective echo
    assert abs(echo[ky == 30][0] - 6) > abs(echo[ky == 2][0] - 6)


def test_cropped_kspace_lands_on_the_block_average():
    n, fine = 32, 64
    image = np.zeros((fine, fine), np.float32)
    image[20:31, 14:41] = 1.0
    block = image.reshape(n, 2, n, 2).mean((1, 3))
    protocol = {"n_eff": 2, "field_t": 3.0, "bandwidth_hz_per_px": 300.0}
    zeros = np.zeros((fine, fine), int)
    out = tse.acquire_slice(image, np.zeros_like(image), zeros, np.ones_like(image), np.ones((1, 4), np.float32),
                            np.zeros((1, 4), np.float32), zeros, protocol)

    def centroid(a):
        rows, cols = np.mgrid[: a.shape[0], : a.shape[1]]
        return np.array([(a * rows).sum(), (a * cols).sum()]) / a.sum()

    np.testing.assert_allclose(centroid(out), centroid(block), atol=0.05)  # a quarter pixel off without the shift
    assert out.sum() == pytest.approx(block.sum(), rel=1e-4)


@pytest.fixture(scope="module")
def pelvis():
    return make_case(case_seed(3, 0), size=96, n_slices=3, anatomy="pelvis")


def test_truth_and_contrast_of_a_case(pelvis):
    ids = {name: index for index, name in pelvis.label_names.items()}
    fat = pelvis.sff[pelvis.labels == ids["subcutaneous fat"]]
    assert 0.86 < np.median(fat) < 0.96
    bladder = pelvis.labels == ids["bladder"]
    assert bladder.sum() > 20
    assert np.median(pelvis.sff[bladder]) == 0.0
    assert (pelvis.sff[:, :3, :3] == 0).all()  # air in the corners
    muscles = np.isin(pelvis.labels, [i for n, i in ids.items() if "gluteus" in n or "iliopsoas" in n])
    te = pelvis.params["protocol"]["te_eff_ms"]
    assert te >= 60
    assert np.median(pelvis.t2w[bladder]) > 2 * np.median(pelvis.t2w[muscles])  # fluid bright at long TE
    assert pelvis.t2w.dtype == np.int16


def test_tissue_classes_mark_mixed_pixels_as_edge():
    from training.phantoms.case import EDGE, _tissue_classes

    fine = np.zeros((4, 4), np.int32)
    fine[:2, :2] = TISSUE_IDS["muscle"]  # one whole output pixel of muscle
    fine[2:, 2:] = TISSUE_IDS["fluid"]
    fine[3, 3] = TISSUE_IDS["adipose"]  # one fine pixel of fat makes that output pixel mixed
    expected = np.array([[TISSUE_IDS["muscle"], TISSUE_IDS["air"]], [TISSUE_IDS["air"], EDGE]])
    np.testing.assert_array_equal(_tissue_classes(fine), expected)


def test_tissue_map_of_a_case(pelvis):
    from training.phantoms.case import EDGE, TISSUE_CLASS_NAMES

    ids = {name: index for index, name in pelvis.label_names.items()}
    assert pelvis.tissues.shape == pelvis.sff.shape
    bladder = pelvis.labels == ids["bladder"]
    fluid = pelvis.tissues == TISSUE_IDS["fluid"]
    assert (fluid & bladder).sum() > 0.7 * bladder.sum()
    assert (pelvis.sff[fluid] == 0).all()
    edge = pelvis.tissues == EDGE
    assert 0 < edge.mean() < 0.3
    assert set(np.unique(pelvis.tissues)) - {0} <= set(TISSUE_CLASS_NAMES)


def test_same_seed_same_case(pelvis):
    again = make_case(case_seed(3, 0), size=96, n_slices=3, anatomy="pelvis")
    for name in ("t2w", "sff", "labels", "tissues"):
        np.testing.assert_array_equal(getattr(again, name), getattr(pelvis, name))
    other = make_case(case_seed(3, 1), size=96, n_slices=3, anatomy="pelvis")
    assert not np.array_equal(other.sff, pelvis.sff)


def test_command_writes_pairs_the_project_reads(tmp_path):
    out = tmp_path / "phantoms"
    code = ("import sys, runpy; sys.argv = ['x', '--out', sys.argv[1], '--cases', '2', '--seed', '5', "
            "'--size', '48', '--slices', '2']\ntry:\n    runpy.run_module('training.phantoms', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "bad = sorted(m for m in sys.modules if m.startswith('napari_sff.simulate'))\n"
            "assert not bad, bad\nprint('independent')")
    result = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "independent" in result.stdout
    from napari_sff import io
    from napari_sff.io.label_names import read_label_names
    from training.data import find_pairs

    pairs = find_pairs(out)
    manifest = json.loads((out / "phantoms.json").read_text())
    assert [p.case for p in pairs] == sorted(entry["case"] for entry in manifest["cases"])
    for entry in manifest["cases"]:
        volumes = {kind: io.read_nifti(out / entry["files"][kind]) for kind in ("t2w", "sff", "labels", "tissues")}
        for volume in volumes.values():
            assert volume.array.shape == (2, 48, 48)
            np.testing.assert_allclose(volume.spacing, entry["spacing"], rtol=1e-5)
        assert entry["spacing"][1] == pytest.approx(entry["params"]["fov_mm"] / 48)
        names = read_label_names(out / entry["files"]["label_names"])
        present = set(np.unique(volumes["labels"].array)) - {0}
        assert present and present <= set(names)
        tissue_names = read_label_names(out / entry["files"]["tissue_names"])
        present = set(np.unique(volumes["tissues"].array)) - {0}
        assert {"muscle", "adipose"} <= {tissue_names[k] for k in present} and present <= set(tissue_names)
    again = subprocess.run([sys.executable, "-m", "training.phantoms", "--out", str(out), "--cases", "1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_docstring_table_lists_every_tissue():
    import training.phantoms as phantoms

    for name in TISSUE_IDS:
        assert f"\n{name} " in phantoms.__doc__


def test_cases_rendered_in_worker_processes_are_those_of_their_seeds(tmp_path):
    from napari_sff import io
    from training.phantoms import write_cases

    manifest = json.loads(write_cases(tmp_path / "p", 2, seed=5, size=32, n_slices=2, workers=2).read_text())
    for index, entry in enumerate(manifest["cases"]):
        expected = make_case(case_seed(5, index), size=32, n_slices=2)
        for kind in ("t2w", "sff", "tissues"):
            np.testing.assert_array_equal(io.read_nifti(tmp_path / "p" / entry["files"][kind]).array,
                                          getattr(expected, kind))
