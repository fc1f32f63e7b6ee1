"""training.recalibration: the fitted curve against hand-computed answers, and the command on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.recalibration import BINS, apply_curve, fit_curve, main

CENTRES = (np.arange(BINS) + 0.5) / BINS


def test_bins_that_fall_are_pooled_by_their_counts():
    # four bins with mean truths 0.1, 0.3, 0.2, 0.4 (one value each): the middle two pool to 0.25
    predicted = CENTRES[[10, 20, 30, 40]]
    x, y = fit_curve(predicted, np.array([0.1, 0.3, 0.2, 0.4]))
    np.testing.assert_allclose(x, predicted)
    np.testing.assert_allclose(y, [0.1, 0.25, 0.25, 0.4])
    # three values at 0.3 against one at 0.2: (3 * 0.3 + 0.2) / 4
    x, y = fit_curve(CENTRES[[10, 10, 10, 20]], np.array([0.3, 0.3, 0.3, 0.2]))
    np.testing.assert_allclose(y, [0.275, 0.275])


def test_an_increasing_relation_is_kept_and_applied_between_and_beyond_the_bins():
    predicted = np.repeat(CENTRES[[5, 50, 95]], 2)
    x, y = fit_curve(predicted, predicted ** 2)
    np.testing.assert_allclose(y, CENTRES[[5, 50, 95]] ** 2)
    halfway = (CENTRES[5] + CENTRES[50]) / 2
    np.testing.assert_allclose(apply_curve(np.array([0.0, halfway, 1.0]), (x, y)),
                               [CENTRES[5] ** 2, (CENTRES[5] ** 2 + CENTRES[50] ** 2) / 2, CENTRES[95] ** 2],
                               rtol=1e-6)


def test_the_command_fits_on_simulated_pairs_and_scores_phantoms(tmp_path):
    from napari_sff.cli import main as napari_sff
    from training.phantoms.__main__ import main as phantoms

    assert napari_sff(["simulate", str(tmp_path / "sim"), "--cases", "1", "--size", "64", "--slices", "3",
                       "--seed", "1"]) == 0
    assert phantoms(["--out", str(tmp_path / "ph"), "--cases", "1", "--size", "128", "--slices", "3",
                     "--seed", "2"]) == 0
    out = tmp_path / "recalibration.json"
    assert main(["--fit", str(tmp_path / "sim"), "--score", str(tmp_path / "ph"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    [score] = result["scores"]
    assert result["cases_fitted"] == 1 and score["slices"] == 3 and score["muscle_rois"] > 0  # slices: thickest axis
    assert np.all(np.diff(result["curve"]["truth"]) >= 0)
    for values in (score["body_mae"], score["muscle_roi_mean_abs_error_pp"]):
        assert set(values) == {"plain", "recalibrated"} and all(np.isfinite(v) for v in values.values())
    assert score["body_mae"]["plain"] != pytest.approx(score["body_mae"]["recalibrated"], abs=1e-9)
