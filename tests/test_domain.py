"""The out-of-distribution check: statistics of normalised slices, the ranges training records, the warning."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sff import cli, domain
from napari_sff.simulate import simulate_case


def test_statistics_known_answer_on_a_uniform_half_slice():
    image = np.zeros((1, 40, 40), np.float32)
    image[0, :, :20] = 500.0  # the left half is uniform "tissue"
    stats = domain.slice_statistics(image)
    assert stats["body_fraction"][0] == pytest.approx(0.5)
    assert stats["median_intensity"][0] == pytest.approx(1.0)  # normalised by the body's 99th percentile
    assert stats["bright_fraction"][0] == pytest.approx(1.0)
    # The gradient is 0 inside, 0.5 on the body's last column (central differences of a step of 1): 1/20 columns.
    assert stats["texture"][0] == pytest.approx(0.5 / 20)
    assert np.isnan(domain.slice_statistics(np.zeros((1, 8, 8)))["median_intensity"][0])  # no body


@pytest.fixture(scope="module")
def simulator_ranges():
    slices = [simulate_case(anatomy, size=64, n_slices=4, seed=seed).t2w
              for seed, anatomy in enumerate(("thigh", "calf", "abdomen") * 2)]
    return domain.training_ranges([domain.slice_statistics(s) for s in slices])


def test_a_scan_like_the_training_data_passes_and_an_unlike_one_is_named(simulator_ranges):
    assert set(simulator_ranges) == set(domain.STATISTICS)
    assert all(low <= high for low, high in simulator_ranges.values())
    fresh = simulate_case("thigh", size=64, n_slices=4, seed=99).t2w
    assert domain.outside_training_range(fresh, simulator_ranges) is None
    rng = np.random.default_rng(0)
    noisy = fresh + rng.normal(0, 0.4 * fresh.max(), fresh.shape).astype(np.float32)
    message = domain.outside_training_range(np.abs(noisy), simulator_ranges)  # noise lifts the air into the body
    assert message.startswith("this scan lies outside what the model was trained on: ")
    assert "share of the slice that is body" in message and message.endswith("read its SFF map with caution")
    # Another contrast (fat dark, as on a T1w-like or fat-suppressed image): the bright share is far off.
    inside = fresh > 0.1 * np.percentile(fresh, 99)
    inverted = np.where(inside, fresh.max() - fresh + 0.2 * fresh.max(), fresh).astype(np.float32)
    assert "share of bright" in domain.outside_training_range(inverted, simulator_ranges)
    assert domain.outside_training_range(fresh, None) is None  # older checkpoints record no ranges


def test_predict_warns_on_one_line_when_the_scan_is_outside(tmp_path, tiny_configs, capsys):
    import nibabel as nib

    from napari_sff.models import build_model, save_checkpoint

    narrow = {name: [0.0, 0.001] for name in domain.STATISTICS}  # nothing real lies in these ranges
    weights = save_checkpoint(build_model("unet", tiny_configs["unet"]), tmp_path / "narrow.safetensors",
                              metadata={"input_statistics": narrow})
    t2w = simulate_case("calf", size=48, n_slices=3, seed=1).t2w
    nib.save(nib.Nifti1Image(np.moveaxis(t2w, 0, 2), np.diag([1.5, 1.5, 6.0, 1.0])), tmp_path / "scan.nii.gz")
    code = cli.main(["predict", str(tmp_path / "scan.nii.gz"), "-o", str(tmp_path / "sff.nii.gz"), "--weights",
                     str(weights), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and len(err) == 1
    assert err[0].startswith("napari-sff predict: warning: ") and "outside what the model was trained on" in err[0]
