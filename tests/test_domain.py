"""The out-of-distribution check: statistics of normalised slices, the ranges training records, the warning."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import limb

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


def test_prediction_normalises_each_slice_once_and_the_check_reads_the_same_statistics(
        simulator_ranges, tiny_configs, monkeypatch):
    from napari_sff import inference, preprocess
    from napari_sff.inference import predict as predict_module
    from napari_sff.models import build_model

    scan = simulate_case("thigh", size=48, n_slices=40, seed=5).t2w  # more slices than the check samples
    normalised = preprocess.normalise_t2w(scan)
    for raw, given in ((scan, normalised), (scan[:3], normalised[:3])):
        ours, theirs = domain.slice_statistics(raw, given), domain.slice_statistics(raw)
        for name in domain.STATISTICS:
            np.testing.assert_array_equal(ours[name], theirs[name])
    narrow = {name: [0.0, 0.001] for name in domain.STATISTICS}
    expected = domain.outside_training_range(scan, narrow)
    assert expected and expected.startswith("this scan lies outside")
    assert domain.outside_training_range(scan, narrow, normalised) == expected

    normalised_rows = []

    def counting(slices, *args, **kwargs):
        normalised_rows.append(len(slices))
        return preprocess.normalise_t2w(slices, *args, **kwargs)

    monkeypatch.setattr(predict_module, "normalise_t2w", counting)
    monkeypatch.setattr(domain, "normalise_t2w", counting)
    model = build_model("unet", tiny_configs["unet"]).eval()
    model.input_statistics = narrow
    result = inference.predict_volume(scan, (5.0, 1.5, 1.5), model=model, device="cpu", batch_size=8,
                                      resample=False, mirror=False)
    assert result.out_of_distribution == expected
    assert normalised_rows == [len(scan)]  # once, for the model and the check together
    normalised_rows.clear()
    batch = inference.predict_volumes([(scan, (5.0, 1.5, 1.5)), (scan[:4], (5.0, 1.5, 1.5))], model=model,
                                      device="cpu", batch_size=8, resample=False, mirror=False)
    assert batch[0].out_of_distribution == expected and normalised_rows == [len(scan) + 4]


# --- the U-Net's own view: bottleneck-feature distance -------------------------------------------------------


def test_feature_distance_is_the_mahalanobis_distance_when_every_axis_is_kept():
    """With all but one principal axis kept, the leftover axis is the residual term: the distance is then the
    full Mahalanobis distance of the standardised features (scipy's, computed independently), over sqrt(D)."""
    from scipy.spatial.distance import mahalanobis

    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(4, 4))
    features = rng.normal(size=(500, 4)) @ mixing + [1.0, -2.0, 0.5, 3.0]
    recorded = domain.feature_statistics(features, components=3)
    z = (features - features.mean(0)) / (features.std(0) + 1e-6)
    inverse = np.linalg.inv(np.cov(z, rowvar=False))
    probes = features[:5] + rng.normal(scale=2.0, size=(5, 4))
    expected = [mahalanobis((p - features.mean(0)) / (features.std(0) + 1e-6), np.zeros(4), inverse) / 2.0
                for p in probes]
    np.testing.assert_allclose(domain.feature_distance(probes, recorded), expected, rtol=1e-6)
    # The recorded threshold is the training slices' own 99th percentile.
    assert np.mean(domain.feature_distance(features, recorded) > recorded["threshold"]) == pytest.approx(0.01, abs=0.003)
    with pytest.raises(ValueError, match="at least 4 slices"):
        domain.feature_statistics(features[:3])


def test_unlike_training_names_slices_only_when_many_lie_beyond():
    recorded = {"threshold": 2.0, "percentile": 99.0}
    assert domain.unlike_training(np.array([1.0] * 19 + [5.0]), range(20), recorded) is None  # 5 %: like training
    message = domain.unlike_training(np.array([1.0] * 16 + [5.0] * 4), range(10, 30), recorded)
    assert message.startswith("to the model, 4 of 20 slices look unlike its training slices (slices 26, 27, 28, 29;")
    assert domain.unlike_training(np.array([5.0] * 3), range(3), recorded).startswith(
        "to the model, all 3 slices look unlike its training slices (feature distance above their 99th percentile)")
    assert domain.unlike_training(np.array([5.0]), [0], None) is None  # checkpoints without features


def test_feature_recorder_keeps_each_batch_once_and_equals_the_bottleneck(tiny_configs):
    import torch

    from napari_sff.models import build_model

    model = build_model("unet", tiny_configs["unet"]).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():  # the encoder by hand: the last level's output before any decoder
        h = x
        for i, encoder in enumerate(model.encoders):
            h = encoder(h if i == 0 else model.pool(h))
    expected = np.concatenate([h.mean((2, 3)).numpy(), h.flatten(2).std(2).numpy()], axis=1)
    with domain.FeatureRecorder(model) as recorder, torch.no_grad():
        model(x[:2])  # a batch that "ran out of memory" and is not kept
        model(x[:2])
        recorder.keep()
        model(x[2:])
        recorder.keep()
    np.testing.assert_allclose(recorder.features(), expected, rtol=1e-5, atol=1e-6)
    model(x)  # the hook is gone after the block
    assert len(recorder.features()) == 3
    assert domain.FeatureRecorder(object()).features() is None  # the DDPM has no U-Net encoder


def test_predict_reports_each_slices_feature_distance_and_names_unlike_ones(tmp_path, tiny_configs):
    import torch

    from napari_sff.inference import predict_volume
    from napari_sff.models import build_model, save_checkpoint

    with torch.random.fork_rng():  # seeded: an unseeded tiny net depended on which tests ran before
        torch.manual_seed(0)
        model = build_model("unet", tiny_configs["unet"])
    t2w = simulate_case("thigh", size=32, n_slices=6, seed=2).t2w
    with domain.FeatureRecorder(model.eval()) as recorder, torch.no_grad():
        from napari_sff.preprocess import normalise_t2w

        model(torch.from_numpy(normalise_t2w(t2w)[:, None]))
        recorder.keep()
    noise = np.random.default_rng(0).normal(size=(40, recorder.features().shape[1]))
    recorded = domain.feature_statistics(recorder.features()[[0] * 40] + 0.01 * noise)  # a tight cloud at slice 0
    weights = save_checkpoint(model, tmp_path / "features.safetensors", metadata={"feature_statistics": recorded})
    prediction = predict_volume(t2w, (5.0, 1.5, 1.5), "unet", weights=weights, device="cpu")
    assert prediction.feature_distance.shape == (6,) and prediction.mirrored
    expected = domain.feature_distance(recorder.features(), recorded)
    # The slices' own features, not their mirror images' (the mirrored pass runs too, and first).
    np.testing.assert_allclose(prediction.feature_distance, expected, rtol=1e-3)
    one_pass = predict_volume(t2w, (5.0, 1.5, 1.5), "unet", weights=weights, device="cpu", mirror=False)
    np.testing.assert_array_equal(one_pass.feature_distance, prediction.feature_distance)
    assert prediction.feature_distance[0] < recorded["threshold"] < prediction.feature_distance[1:].min()
    assert "5 of 6 slices look unlike its training slices (slices 1, 2, 3, 4, 5;" in prediction.out_of_distribution
    only_one = predict_volume(t2w, (5.0, 1.5, 1.5), "unet", weights=weights, device="cpu", slice_indices=[0])
    assert only_one.feature_distance.shape == (1,) and only_one.out_of_distribution is None


def test_statistics_read_the_slices_as_the_models_normalisation_makes_them():
    """Known answer on a limb (fat ring, muscle inside): median body intensity is muscle's level under each method,
    and "bright" is relative to the method's reference tissue, so the share of bright pixels is the same."""
    image = limb()[None]
    body = image > 0.1 * 1000.0
    bright_share = np.mean(image[body] == 1000.0)  # the fat ring; skin (0.4 x fat) is not bright under either
    for method, muscle_level in (("p99", 0.3), ("fat", 0.15)):
        statistics = domain.slice_statistics(image, method=method)
        assert statistics["median_intensity"][0] == pytest.approx(muscle_level)
        assert statistics["bright_fraction"][0] == pytest.approx(bright_share)
