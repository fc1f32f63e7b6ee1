"""Training pipeline with tiny models: cache splits, train/resume, checkpoints, two-process DDP."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import TINY_CONFIGS, cpu_reports_native_bf16, limb

from training import data as training_data
from training import train as training_train
from training.train import loop as train_loop
from training.train import startup as train_startup

ROOT = Path(__file__).resolve().parents[1]
TINY_UNET = json.dumps(TINY_CONFIGS["unet"])
TINY_DDPM = json.dumps(TINY_CONFIGS["ddpm"])


@pytest.fixture(scope="module")
def paired_dir(tmp_path_factory) -> Path:
    """Six tiny paired cases: SFF is a smooth function of the T2w so a model can learn something."""
    folder = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for case in range(6):
        t2w = rng.uniform(50, 1000, size=(24, 24, 3)).astype(np.float32)
        sff = np.clip(t2w / 1000.0, 0, 1).astype(np.float32)
        affine = np.diag([1.5, 1.5, 5.0, 1.0])
        nib.save(nib.Nifti1Image(t2w, affine), folder / f"c{case}_t2w.nii.gz")
        nib.save(nib.Nifti1Image(sff, affine), folder / f"c{case}_sff.nii.gz")
        labels = np.zeros(t2w.shape, np.uint8)
        labels[2:10, 2:20], labels[14:22, 4:20] = 1, 2  # two "muscles" per slice
        nib.save(nib.Nifti1Image(labels, affine), folder / f"c{case}_labels.nii.gz")
    return folder


def test_cache_splits_by_case_without_leakage(paired_dir, tmp_path):
    cache = training_data.build_slice_cache(paired_dir, tmp_path / "cache", size=32, seed=1)
    info = json.loads((cache / training_data.CACHE_INFO).read_text())
    cases = [set(info["splits"][s]["cases"]) for s in training_data.SPLITS]
    assert all(cases) and not (cases[0] & cases[1] or cases[0] & cases[2] or cases[1] & cases[2])
    assert sum(info["splits"][s]["slices"] for s in training_data.SPLITS) == 6 * 3  # slices along the 5 mm axis
    train = training_data.SliceDataset(cache, "train", training_data.Augmentation(crop=16))
    t2w, sff = train[0]
    assert tuple(t2w.shape) == (1, 16, 16) and tuple(sff.shape) == (1, 16, 16)
    # The cases' known answer, SFF = T2w / 1000 pixel by pixel, holds in the cache: pairs stay aligned, 24² -> 32²
    # zero-padded around the centre.
    stacks = training_data.open_split(cache, "train")
    raw, truth = (stack[list(range(len(stack)))] for stack in stacks)
    assert raw.shape == truth.shape == (info["splits"]["train"]["slices"], 32, 32)
    np.testing.assert_allclose(truth, raw / 1000, rtol=1e-6)
    assert (raw[:, 4:28, 4:28] >= 50).all() and raw[:, :4].sum() == raw[:, :, 28:].sum() == 0


def test_augmentation_is_seeded_and_keeps_pairs_aligned():
    rng_image = np.random.default_rng(0).uniform(0, 1000, (40, 40)).astype(np.float32)
    truth = rng_image / 1000
    augment = training_data.Augmentation(crop=24, noise=(0.0, 0.0), gamma=(1.0, 1.0), bias=0.0)
    a = augment(rng_image, truth, np.random.default_rng(5))
    b = augment(rng_image, truth, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    ratio = a[1] / np.maximum(a[0], 1e-6)  # geometry applied identically: SFF stays proportional to T2w
    inside = a[0] > 1
    assert np.ptp(ratio[inside]) < 1e-3 * ratio[inside].mean() * 50


def test_the_augmentations_warp_is_scipys_bilinear_affine_transform(monkeypatch):
    """warp_bilinear (one torch grid_sample for the T2w/SFF pair) against scipy's affine_transform, order 1,
    mode "grid-constant" (zero beyond the edge, interpolated over the last pixel), on a rotation with zoom and
    on a non-square image; and a neutral augmentation leaves the pixels untouched."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for shape, angle, zoom in (((2, 48, 48), 9.0, 1.12), ((2, 40, 56), -7.0, 0.87)):
        images = rng.uniform(0, 1000, shape).astype(np.float32)
        theta = np.deg2rad(angle)
        matrix = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) / zoom
        centre = (np.array(shape[1:]) - 1) / 2
        offset = centre - matrix @ centre
        warped = training_data.dataset.warp_bilinear(images, matrix, offset)
        for channel in range(2):
            expected = ndimage.affine_transform(images[channel].astype(np.float64), matrix, offset, order=1,
                                                mode="grid-constant", cval=0.0)
            np.testing.assert_allclose(warped[channel], expected, rtol=0, atol=0.05)  # of values up to 1000
        assert warped.dtype == np.float32 and (zoom > 1 or (warped == 0).any())  # zoomed out: the outside shows
    neutral = training_data.Augmentation(crop=None, rotate_deg=0.0, zoom=(1.0, 1.0), flip_lr=0, flip_ud=0,
                                         transpose=0, gamma=(1.0, 1.0), bias=0.0, noise=(0.0, 0.0), scale=(1.0, 1.0))
    image = rng.uniform(0, 1000, (32, 32)).astype(np.float32)
    monkeypatch.setattr(training_data.dataset, "warp_bilinear", lambda *args: pytest.fail("a neutral one warped"))
    np.testing.assert_allclose(neutral(image, image / 1000, rng)[0], image, rtol=1e-6)


def run_train(*args: str) -> None:
    training_train.main(list(args))


def read_log(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as stream:
        return list(csv.DictReader(stream))


@pytest.mark.parametrize("model,config", [("unet", TINY_UNET), ("ddpm", TINY_DDPM)])
def test_train_save_resume_and_predict(paired_dir, tmp_path, model, config):
    from napari_sff.inference import default_settings, load_model, predict_volume
    from napari_sff.models import load_checkpoint
    from napari_sff.preprocess import normalise_t2w

    run = tmp_path / model
    common = ["--model", model, "--data", str(paired_dir), "--out", str(run), "--model-config", config,
              "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "16", "--cache-size", "32",
              "--workers", "0", "--val-slices", "2", "--val-ddim-steps", "2"]
    run_train(*common, "--epochs", "1")
    assert len(read_log(run)) == 1
    run_train(*common, "--epochs", "2")  # resumes: one more epoch, not two
    rows = read_log(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # The log's clock carries over the resume: it is kept in resume.pt and only grows.
    assert float(rows[1]["seconds"]) >= float(rows[0]["seconds"])
    assert torch.load(run / "resume.pt", weights_only=True)["seconds"] == float(rows[1]["seconds"])
    assert all(np.isfinite(float(r["val_mae"])) for r in rows)
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"] == model and saved["epochs"] == 2

    net, meta = load_checkpoint(run / "last.safetensors", expected_arch=model)
    assert meta["metadata"]["epoch"] == 2 and "normalisation" in meta["metadata"]
    # The pixel spacings it saw: the cases' 1.5 mm, widened by the default zoom augmentation (0.85-1.15).
    assert meta["metadata"]["input_spacing_mm"] == pytest.approx([1.5 / 1.15, 1.5 / 0.85])
    assert load_model(model, run / "last.safetensors")[0].input_spacing_mm == pytest.approx((1.5 / 1.15, 1.5 / 0.85))
    # What predict compares a scan with (napari_sff.domain): every statistic's range over the training slices.
    from napari_sff.domain import STATISTICS

    statistics = meta["metadata"]["input_statistics"]
    assert set(statistics) == set(STATISTICS) and all(low <= high for low, high in statistics.values())
    assert 0 < statistics["body_fraction"][0] <= statistics["body_fraction"][1] <= 1
    # The U-Net's bottleneck features over its training slices, stamped at the end of the run (weights unchanged).
    features = meta["metadata"].get("feature_statistics")
    if model == "unet":
        cfg = json.loads(config)  # mean and SD of each bottleneck channel
        width = 2 * cfg["base_channels"] * 2 ** (cfg["depth"] - 1)
        assert len(features["mean"]) == width and len(features["axes"][0]) == width and features["threshold"] > 0
        assert features["slices"] == meta["metadata"]["training_data"]["splits"]["train"]["slices"]
    else:
        assert features is None
    volume = np.random.default_rng(1).uniform(0, 500, (3, 20, 20)).astype(np.float32)
    prediction = predict_volume(volume, (5.0, 1.5, 1.5), model, weights=run / "last.safetensors", device="cpu",
                                ddim_steps=2, samples=2, batch_size=len(volume),  # one batch, as by hand below
                                mirror=False)
    assert prediction.sff.shape == volume.shape and (prediction.std is not None) == (model == "ddpm")
    # Known answer: the saved network run by hand on the normalised slices (one batch, seed 0, 1.5 mm is inside
    # the trained spacing so nothing is resampled).
    x = torch.from_numpy(normalise_t2w(volume)[:, None])
    if default_settings("cpu").channels_last:  # the memory format predict runs in (other conv kernels)
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        if model == "unet":
            expected, expected_std = net.eval()(x).clamp(0, 1)[:, 0].numpy(), None
        else:
            mean, std = net.eval().sample(x, steps=2, n_samples=2, generator=torch.Generator().manual_seed(0))
            expected, expected_std = mean[:, 0].numpy(), std[:, 0].numpy()
    np.testing.assert_allclose(prediction.sff, expected, atol=1e-6)
    if expected_std is not None:
        np.testing.assert_allclose(prediction.std, expected_std, atol=1e-6)


def test_two_process_ddp_ends_with_identical_weights(paired_dir, tmp_path):
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
               "-m", "training.train", "--model", "unet", "--data", str(paired_dir), "--out", str(run),
               "--model-config", TINY_UNET, "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "2",
               "--crop", "16", "--cache-size", "32", "--workers", "0", "--val-slices", "2", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [(run / f"weights_rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert (run / "best.safetensors").exists()


def test_evaluate_reports_table_ablation_and_paired_tests(paired_dir, tmp_path, monkeypatch):
    from training import evaluate

    calls = []
    real_run_model = evaluate.run_model
    for part in ("run", "robustness"):  # where run_model is called: the table and ablations, the perturbed copies
        monkeypatch.setattr(f"training.evaluate.{part}.run_model",
                            lambda arch, *a, **k: calls.append(arch) or real_run_model(arch, *a, **k))

    for model, config in (("unet", TINY_UNET), ("ddpm", TINY_DDPM)):
        run_train("--model", model, "--data", str(paired_dir), "--out", str(tmp_path / model), "--model-config",
                  config, "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "16",
                  "--cache-size", "32", "--workers", "0", "--val-slices", "2", "--val-ddim-steps", "1")
    out = tmp_path / "report.json"
    evaluate.main(["--data", str(tmp_path / "unet" / "cache"), "--split", "train", "--unet",
                   str(tmp_path / "unet" / "best.safetensors"), "--ddpm", str(tmp_path / "ddpm" / "best.safetensors"),
                   "--ddim-steps", "2", "--ablation", "1,2", "--device", "cpu", "--out", str(out),
                   "--markdown", str(tmp_path / "report.md"), "--robustness", "--rois", "--check-ddim-steps", "1",
                   "--samples-ablation", "1,2", "--figures", str(tmp_path / "figures")])
    report = json.loads(out.read_text())
    assert [row["samples"] for row in report["samples_ablation"]] == [1, 2]
    assert sorted(Path(p).name for p in report["figures"]) == ["bland_altman.png", "ddim_ablation.png", "examples.png"]
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in report["figures"])
    # The identity predicts T2w / p99 (p99 ~990) for SFF = T2w / 1000: MSE = (1/990 - 1/1000)^2 E[T2w^2] with T2w
    # uniform on 50..1000 (E = 3.5e5) is 3.6e-5, a PSNR of 44.5 dB (by hand), and a near-perfect SSIM.
    assert report["models"]["identity"]["psnr"] == pytest.approx(44.5, abs=2)
    assert report["models"]["identity"]["ssim"] > 0.95
    assert "| SSIM ± SD (body) |" in (tmp_path / "report.md").read_text()
    assert set(report["models"]) == {"identity", "unet", "unet_one_pass", "ddpm"}  # the U-Net also in one pass
    assert [row["ddim_steps"] for row in report["ddim_ablation"]] == [1, 2]
    assert report["models"]["identity"]["images"] == report["images"] > 1
    # Known answer for the baseline: SFF = T2w / 1000 and the identity divides by the body's 99th percentile
    # (~990 for uniform 50-1000 T2w), so it is off by ~0.5 % of the SFF: MAE 0.0055 (numpy by hand).
    assert report["models"]["identity"]["mae"] == pytest.approx(0.0055, abs=0.001)
    assert report["models"]["identity"]["r"] > 0.9999
    assert np.isfinite(report["models"]["unet"]["mae"]) and report["models"]["unet"]["mae"] != report["models"][
        "identity"]["mae"]
    assert set(report["paired_tests"]) == {"unet_vs_unet_one_pass", "unet_vs_ddpm", "unet_vs_identity",
                                           "ddpm_vs_identity"}
    text = (tmp_path / "report.md").read_text()
    assert "| U-Net, mean with mirror |" in text and "| U-Net, one pass |" in text
    assert [row["perturbation"] for row in report["robustness"]] == list(evaluate.PERTURBATIONS)
    assert report["robustness"][0]["perturbation"] == "none"
    # The unperturbed row reuses the scores already measured (same images, same DDIM steps) instead of rerunning:
    # each model runs once for the table (the DDPM once per ablation step and per samples-ablation count) and
    # once per actual perturbation; the U-Net once more in one pass, beside the mirrored table row.
    perturbed = len(evaluate.PERTURBATIONS) - 1
    assert calls.count("unet") == 2 + perturbed and calls.count("ddpm") == 2 + 2 + perturbed
    none_row, one_step = report["robustness"][0], report["ddim_ablation"][0]
    assert none_row["unet"]["mae"] == report["models"]["unet"]["mae"]
    assert none_row["ddpm"]["mae"] == one_step["mae"] and none_row["ddpm"]["r"] == one_step["r"]
    assert (tmp_path / "report.md").read_text().startswith("Train split:")
    assert all(np.isfinite(row[key]["mae"]) for row in report["robustness"] for key in ("identity", "unet", "ddpm"))
    # The identity is per pixel and the normalisation per slice, so turning the image changes nothing for it.
    turned = next(row for row in report["robustness"] if row["perturbation"].startswith("other orientation"))
    assert turned["identity"]["mae"] == pytest.approx(none_row["identity"]["mae"], rel=1e-9)
    assert turned["unet"]["mae"] != none_row["unet"]["mae"]  # the U-Net is not orientation-invariant
    assert "8-bit storage" in (tmp_path / "report.md").read_text()
    assert report["rois"]["rois"] > 0 and {"identity", "unet", "ddpm"} <= set(report["rois"])
    assert "| DDPM (DDIM), 1 steps |" in (tmp_path / "report.md").read_text()
    # The U-Net's feature distance per image (its checkpoint was stamped with its training slices' features,
    # here the same train split) and the cases predict would flag, one entry per case of the split.
    check = report["feature_distance"]
    info = json.loads((tmp_path / "unet" / "cache" / "cache.json").read_text())["splits"]["train"]
    assert check["images"] == check["training_slices"] == report["images"] and check["cases"] == len(info["cases"])
    assert set(check["cases_flagged"]) <= set(info["cases"]) and check["threshold"] > 0
    assert "U-Net feature distance" in (tmp_path / "report.md").read_text()
    no_rois = {**report, "rois": {**report["rois"], "rois": 0, "cases": 0, "truth_mean": None}}
    assert "no labelled ROIs" in evaluate.markdown(no_rois)


def test_ddpm_subset_is_spread_evenly_and_paired_tests_pair_the_same_images(paired_dir, tmp_path, constant_weights,
                                                                           monkeypatch):
    from training import evaluate
    from training.metrics import image_metrics

    np.testing.assert_array_equal(evaluate.evenly_spaced(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(evaluate.evenly_spaced(3, None), [0, 1, 2])
    assert evaluate.evenly_spaced(0, 5).size == 0
    cache = training_data.build_slice_cache(paired_dir, tmp_path / "cache", size=32, seed=1)
    paired = {}
    real_test = evaluate.paired_test
    monkeypatch.setattr("training.evaluate.run.paired_test",  # where the evaluation looks it up
                        lambda a, b: paired.setdefault(len(paired), (a, b)) and real_test(a, b))
    out = tmp_path / "report.json"
    evaluate.main(["--data", str(cache), "--split", "train", "--ddpm", str(constant_weights["ddpm"]),
                   "--ddim-steps", "1", "--ddpm-max-images", "3", "--device", "cpu", "--out", str(out)])
    report = json.loads(out.read_text())
    raw, truth = evaluate.load_split(str(cache), "train", None)
    assert report["images"] == len(raw) > 6 and report["models"]["ddpm"]["images"] == 3
    # The DDPM scored images 0, middle, last; its test against the identity uses the identity's MAEs of exactly
    # those images (the first three would differ), and the constant DDPM's own (~0.5 everywhere).
    chosen = evaluate.evenly_spaced(len(raw), 3)
    assert chosen.tolist() != [0, 1, 2]
    identity = [image_metrics(evaluate.identity_prediction(raw[i]), truth[i], raw[i])["mae"] for i in chosen]
    ddpm = [image_metrics(np.full_like(truth[i], 0.5), truth[i], raw[i])["mae"] for i in chosen]
    (ddpm_maes, identity_maes), = paired.values()
    np.testing.assert_allclose(identity_maes, identity, rtol=1e-6)
    np.testing.assert_allclose(ddpm_maes, ddpm, atol=0.03)
    assert report["paired_tests"]["ddpm_vs_identity"]["n"] == 3


def test_a_reference_ddpm_is_scored_on_the_same_images_steps_and_noise_with_a_paired_test(
        paired_dir, tmp_path, constant_weights, tiny_weights, capsys):
    from training import evaluate

    cache = training_data.build_slice_cache(paired_dir, tmp_path / "cache", size=32, seed=1)
    common = ["--data", str(cache), "--split", "train", "--ddim-steps", "1", "--ddpm-max-images", "3",
              "--device", "cpu"]
    out = tmp_path / "report.json"
    evaluate.main([*common, "--ddpm", str(tiny_weights["ddpm"]), "--ddpm-reference", str(constant_weights["ddpm"]),
                   "--rois", "--out", str(out), "--markdown", str(tmp_path / "report.md")])
    report = json.loads(out.read_text())
    reference = report["models"]["ddpm_reference"]
    assert reference["images"] == report["models"]["ddpm"]["images"] == 3
    assert reference["weights"] == str(constant_weights["ddpm"]) and reference["ddim_steps"] == 1
    assert report["paired_tests"]["ddpm_vs_ddpm_reference"]["n"] == 3
    # Known answer: the constant DDPM's map is 0.5 within ~0.03 (conftest), on the same three images as --ddpm's.
    raw, truth = evaluate.load_split(str(cache), "train", None)
    chosen = evaluate.evenly_spaced(len(raw), 3)
    expected, _ = evaluate.score(np.full_like(truth[chosen], 0.5), truth[chosen], raw[chosen])
    assert reference["mae"] == pytest.approx(expected["mae"], abs=0.03)
    assert "| DDPM (DDIM), reference weights, 1 steps (3 images) |" in (tmp_path / "report.md").read_text()
    assert report["rois"]["ddpm_reference"]["bias"] == pytest.approx(0.5 - report["rois"]["truth_mean"], abs=0.03)
    # The same weights as their own reference: the same images, steps and noise give the same maps, so equal rows.
    evaluate.main([*common, "--ddpm", str(tiny_weights["ddpm"]), "--ddpm-reference", str(tiny_weights["ddpm"]),
                   "--out", str(out)])
    same = json.loads(out.read_text())
    models = same["models"]
    assert models["ddpm_reference"]["mae"] == models["ddpm"]["mae"] and models["ddpm_reference"]["r"] == models["ddpm"]["r"]
    assert "| ddpm vs ddpm reference | 3 | +0.0000 | no test: every pair equal |" in evaluate.markdown(same)
    with pytest.raises(SystemExit):
        evaluate.main([*common, "--ddpm-reference", str(tiny_weights["ddpm"])])
    assert "give --ddpm too" in capsys.readouterr().err


def test_a_reference_unet_is_scored_on_the_same_images_with_a_paired_test(paired_dir, tmp_path, constant_weights,
                                                                         tiny_weights):
    from training import evaluate

    cache = training_data.build_slice_cache(paired_dir, tmp_path / "cache", size=32, seed=1)
    out = tmp_path / "report.json"
    evaluate.main(["--data", str(cache), "--split", "train", "--unet", str(tiny_weights["unet"]), "--unet-reference",
                   str(constant_weights["unet"]), "--device", "cpu", "--out", str(out), "--rois",
                   "--markdown", str(tmp_path / "report.md")])
    report = json.loads(out.read_text())
    reference = report["models"]["unet_reference"]
    assert reference["images"] == report["images"] and reference["weights"] == str(constant_weights["unet"])
    # Known answer: the reference predicts 0.3 everywhere, SFF = T2w / 1000 is uniform on 0.05-1 in the body.
    raw, truth = evaluate.load_split(str(cache), "train", None)
    expected, _ = evaluate.score(np.full_like(truth, 0.3), truth, raw)
    assert reference["mae"] == pytest.approx(expected["mae"], rel=1e-4)
    assert report["paired_tests"]["unet_vs_unet_reference"]["n"] == report["images"]
    assert "| U-Net, reference weights, mean with mirror |" in (tmp_path / "report.md").read_text()
    rois = report["rois"]  # the reference's ROI means too: 0.3 in every ROI, so its bias is 0.3 - the truth's
    assert rois["unet_reference"]["bias"] == pytest.approx(0.3 - rois["truth_mean"], abs=1e-5)
    assert rois["unet_reference"]["mae"] != rois["unet"]["mae"]
    # Predict's default, the mean with the mirrored slice, is scored beside the same weights in one pass, paired.
    assert report["unet_mirror"] and report["paired_tests"]["unet_vs_unet_one_pass"]["n"] == report["images"]
    from napari_sff.inference import load_model, predict_slices

    unet, _ = load_model("unet", tiny_weights["unet"], "cpu")
    for key, mirror in (("unet", True), ("unet_one_pass", False)):
        predicted, _ = predict_slices(unet, raw, device=torch.device("cpu"), mirror=mirror)
        assert report["models"][key]["mae"] == pytest.approx(evaluate.score(predicted, truth, raw)[0]["mae"], rel=1e-5)
    assert report["models"]["unet"]["mae"] != report["models"]["unet_one_pass"]["mae"]
    evaluate.main(["--data", str(cache), "--split", "train", "--unet", str(tiny_weights["unet"]), "--no-mirror",
                   "--device", "cpu", "--out", str(out)])
    report = json.loads(out.read_text())
    assert not report["unet_mirror"] and set(report["models"]) == {"identity", "unet"}
    assert report["models"]["unet"]["mae"] == pytest.approx(
        evaluate.score(predicted, truth, raw)[0]["mae"], rel=1e-5)


def test_evaluate_runs_in_the_precision_asked_and_scores_another_paired(paired_dir, tmp_path, tiny_weights):
    from napari_sff.inference import load_model, predict_slices
    from training import evaluate
    from training.metrics import evaluation_mask

    cache = training_data.build_slice_cache(paired_dir, tmp_path / "cache", size=32, seed=1)
    out, md = tmp_path / "report.json", tmp_path / "report.md"
    evaluate.main(["--data", str(cache), "--split", "train", "--unet", str(tiny_weights["unet"]), "--no-mirror",
                   "--precision", "float32", "--compare-precision", "bfloat16", "--device", "cpu", "--out", str(out),
                   "--markdown", str(md)])
    assert "NAPARI_SFF_PRECISION" not in os.environ  # the run's precision does not outlive it
    report = json.loads(out.read_text())
    other = report["models"]["unet_other_precision"]
    assert report["precision"] == "float32" and other["precision"] == "bfloat16"
    assert report["paired_tests"]["unet_vs_unet_other_precision"]["n"] == report["images"]
    raw, truth = evaluate.load_split(str(cache), "train", None)
    unet, _ = load_model("unet", tiny_weights["unet"], "cpu")
    maps = {p: predict_slices(unet, raw, device=torch.device("cpu"), mirror=False, precision=p)[0]
            for p in ("float32", "bfloat16")}
    for key, precision in (("unet", "float32"), ("unet_other_precision", "bfloat16")):
        assert report["models"][key]["mae"] == pytest.approx(evaluate.score(maps[precision], truth, raw)[0]["mae"],
                                                             rel=1e-5)
    moved = np.abs(maps["bfloat16"] - maps["float32"])[np.stack([evaluation_mask(r) for r in raw])]
    assert moved.max() > 0  # bfloat16 really ran: its maps are not float32's
    assert other["map_difference_in_body"]["mean"] == pytest.approx(float(moved.mean()), rel=1e-4)
    assert other["map_difference_in_body"]["max"] == pytest.approx(float(moved.max()), rel=1e-4)
    assert "precision float32." in md.read_text() and "| U-Net in bfloat16 |" in md.read_text()


def test_roi_agreement_compares_each_labelled_roi_mean_with_the_truth(paired_dir, tmp_path, tiny_weights):
    from napari_sff import io
    from napari_sff.preprocess import normalise_t2w
    from training import evaluate

    cache = training_data.build_slice_cache(paired_dir, tmp_path / "cache", size=32, seed=1)
    checks = evaluate.volume_checks(cache, "train", {"unet": (str(tiny_weights["unet"]), 1)},
                                    device=evaluate.resolve_device("cpu"), batch_size=2)
    summary, core = checks["rois"], checks["rois_core"]
    cases = json.loads((cache / training_data.CACHE_INFO).read_text())["splits"]["train"]["cases"]
    assert summary["cases"] == len(cases) and summary["rois"] == 2 * len(cases)
    # Known answer for the identity: ROI means of the per-slice normalised T2w (slices along the 5 mm axis);
    # without the rim: over the voxels whose in-plane 4-neighbours share their label (the image edge is none).
    truth, identity, core_truth, core_identity = [], [], [], []
    for case in cases:
        t2w, sff, labels = (io.read_nifti(paired_dir / f"{case}_{kind}.nii.gz").array for kind in ("t2w", "sff", "labels"))
        axis = int(np.argmax(io.read_nifti(paired_dir / f"{case}_t2w.nii.gz").spacing))
        normalised = np.moveaxis(np.clip(normalise_t2w(np.moveaxis(t2w, axis, 0)), 0, 1), 0, axis)
        for label in (1, 2):
            truth.append(sff[labels == label].mean())
            identity.append(normalised[labels == label].mean())
            inner = labels == label
            for other in (a for a in range(3) if a != axis):
                for ahead, behind in ((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None))):
                    here, there = [slice(None)] * 3, [slice(None)] * 3
                    here[other], there[other] = ahead, behind
                    inner[tuple(here)] &= labels[tuple(there)] == label
            if inner.any():
                core_truth.append(sff[inner].mean())
                core_identity.append(normalised[inner].mean())
    truth, identity = np.array(truth), np.array(identity)
    assert summary["identity"]["mae"] == pytest.approx(np.abs(identity - truth).mean(), rel=1e-5)
    assert summary["identity"]["bias"] == pytest.approx((identity - truth).mean(), rel=1e-5, abs=1e-7)
    assert summary["unet"]["n"] == 2 * len(cases) and np.isfinite(summary["unet"]["mae"])
    assert core["rois"] == len(core_truth) > 0
    assert core["identity"]["mae"] == pytest.approx(np.abs(np.subtract(core_identity, core_truth)).mean(), rel=1e-5)
    assert core["identity"]["mae"] != pytest.approx(summary["identity"]["mae"], rel=1e-3)  # the rim mattered


def test_roi_agreement_keeps_muscle_rois_apart_from_other_labelled_structures(paired_dir, tmp_path, tiny_weights):
    """Where a tissue map says a label is mostly not muscle (the phantoms label fat, marrow, fluid, masses too),
    the muscle ROI agreement leaves it out; all labels are summarised apart."""
    from napari_sff import io
    from napari_sff.preprocess import normalise_t2w
    from training import evaluate

    folder = tmp_path / "pairs"
    folder.mkdir()
    for path in paired_dir.iterdir():
        (folder / path.name).symlink_to(path)
    cases = sorted(p.name[: -len("_t2w.nii.gz")] for p in paired_dir.glob("*_t2w.nii.gz"))
    for case in cases:  # label 1 lies in muscle tissue, label 2 in "fluid" (3 of 4 voxels) and muscle
        labels = nib.load(paired_dir / f"{case}_labels.nii.gz")
        data = labels.get_fdata()
        tissues = np.where(data == 1, 2, 0)
        tissues[data == 2] = 3
        tissues[(data == 2) & (np.indices(data.shape)[0] % 4 == 0)] = 2
        nib.save(nib.Nifti1Image(tissues.astype(np.int16), labels.affine), folder / f"{case}_tissues.nii.gz")
        (folder / f"{case}_tissues.json").write_text(json.dumps({"2": "muscle", "3": "fluid"}))
    cache = training_data.build_slice_cache(folder, tmp_path / "cache", size=32, seed=1)
    checks = evaluate.volume_checks(cache, "train", {"unet": (str(tiny_weights["unet"]), 1)},
                                    device=evaluate.resolve_device("cpu"), batch_size=2)
    train = json.loads((cache / training_data.CACHE_INFO).read_text())["splits"]["train"]["cases"]
    muscle, every = checks["rois"], checks["rois_all_structures"]
    assert (muscle["rois"], every["rois"]) == (len(train), 2 * len(train))
    truth, identity = [], []  # known answer: the identity's ROI means over label 1 only
    for case in train:
        t2w, sff, labels = (io.read_nifti(paired_dir / f"{case}_{kind}.nii.gz").array for kind in ("t2w", "sff", "labels"))
        axis = int(np.argmax(io.read_nifti(paired_dir / f"{case}_t2w.nii.gz").spacing))
        normalised = np.moveaxis(np.clip(normalise_t2w(np.moveaxis(t2w, axis, 0)), 0, 1), 0, axis)
        truth.append(sff[labels == 1].mean())
        identity.append(normalised[labels == 1].mean())
    assert muscle["identity"]["mae"] == pytest.approx(np.abs(np.array(identity) - truth).mean(), rel=1e-5)
    report = {"split": "train", "images": 1, "gpu": None, "device": "cpu", "batch_size": 1, "models": {},
              "ddim_ablation": [], "paired_tests": {}, **checks}
    assert f"all {2 * len(train)} labelled structures" in evaluate.markdown(report)


def test_tissue_breakdown_pools_each_tissue_and_splits_muscle_by_true_sff(paired_dir, tmp_path, tiny_weights):
    from napari_sff import io
    from napari_sff.preprocess import normalise_t2w
    from training import evaluate

    # Tissue maps of the paired cases: 1 "adipose" where T2w > 700, 2 "muscle" elsewhere in the two ROIs.
    folder = tmp_path / "pairs"
    folder.mkdir()
    for path in paired_dir.iterdir():
        (folder / path.name).symlink_to(path)
    cases = sorted(p.name[: -len("_t2w.nii.gz")] for p in paired_dir.glob("*_t2w.nii.gz"))
    names = {"1": "adipose", "2": "muscle"}
    for case in cases:
        t2w, labels = (nib.load(paired_dir / f"{case}_{kind}.nii.gz") for kind in ("t2w", "labels"))
        tissues = np.where(t2w.get_fdata() > 700, 1, np.where(labels.get_fdata() > 0, 2, 0)).astype(np.int16)
        nib.save(nib.Nifti1Image(tissues, t2w.affine), folder / f"{case}_tissues.nii.gz")
        (folder / f"{case}_tissues.json").write_text(json.dumps(names))
    cache = training_data.build_slice_cache(folder, tmp_path / "cache", size=32, seed=1)
    checks = evaluate.volume_checks(cache, "train", {"unet": (str(tiny_weights["unet"]), 1)},
                                    device=evaluate.resolve_device("cpu"), batch_size=2, rois=False, tissues=True)
    assert checks["rois"] is None
    summary = checks["tissues"]
    train = json.loads((cache / training_data.CACHE_INFO).read_text())["splits"]["train"]["cases"]
    assert summary["cases"] == len(train)
    # Known answer for the identity, pooled over voxels of all train cases (slices along the 5 mm axis).
    expected: dict[str, list[np.ndarray]] = {}
    for case in train:
        t2w, sff = (io.read_nifti(paired_dir / f"{case}_{kind}.nii.gz").array for kind in ("t2w", "sff"))
        tissues = io.read_nifti(folder / f"{case}_tissues.nii.gz").array
        axis = int(np.argmax(io.read_nifti(paired_dir / f"{case}_t2w.nii.gz").spacing))
        identity = np.moveaxis(np.clip(normalise_t2w(np.moveaxis(t2w, axis, 0)), 0, 1), 0, axis)
        error = identity - np.clip(sff, 0, 1)
        muscle = tissues == 2
        for name, mask in (("adipose", tissues == 1), ("muscle, true SFF 0–10 %", muscle & (sff < 0.1)),
                           ("muscle, true SFF 10–30 %", muscle & (sff >= 0.1) & (sff < 0.3)),
                           ("muscle, true SFF ≥ 30 %", muscle & (sff >= 0.3))):
            expected.setdefault(name, []).append(error[mask])
        case_error = error[(tissues == 1) | muscle]
        by_case = {entry["case"]: entry for entry in summary["per_case"]}
        assert by_case[case]["voxels"] == case_error.size  # each volume's body error, beside the pooled rows
        assert by_case[case]["identity"]["mae"] == pytest.approx(np.abs(case_error).mean(), rel=1e-5)
        assert by_case[case]["identity"]["bias"] == pytest.approx(case_error.mean(), rel=1e-4, abs=1e-7)
    assert [entry["case"] for entry in summary["per_case"]] == train
    rows = {row["tissue"]: row for row in summary["rows"]}
    assert set(rows) == {name for name, errors in expected.items() if np.concatenate(errors).size}
    body = np.concatenate([np.concatenate(errors) for errors in expected.values()])
    for name, row in rows.items():
        errors = np.concatenate(expected[name])
        assert row["voxels"] == errors.size
        assert row["identity"]["mae"] == pytest.approx(np.abs(errors).mean(), rel=1e-5)
        assert row["identity"]["bias"] == pytest.approx(errors.mean(), rel=1e-4, abs=1e-7)
        assert row["identity"]["share_of_error"] == pytest.approx(np.abs(errors).sum() / np.abs(body).sum(), rel=1e-4)
    assert summary["body"]["identity"]["mae"] == pytest.approx(np.abs(body).mean(), rel=1e-5)
    assert sum(row["unet"]["share_of_error"] for row in rows.values()) == pytest.approx(1.0)
    table = "\n".join(evaluate.tissue_markdown(summary, {"identity": "Identity", "unet": "U-Net"}, "train"))
    assert "| adipose |" in table and "U-Net MAE / bias / share" in table


def test_spacing_check_scores_each_model_native_and_resampled_per_matrix_size(tmp_path):
    from napari_sff.models import build_model, save_checkpoint
    from training import evaluate

    # Trained, says its header, on 2.5-5.5 mm pixels: the 32² cases (8-16 mm) are resampled, not the 96² (2.7-5.2 mm).
    torch.manual_seed(0)  # unseeded, an untrained net could come out constant (dead ReLUs): both maps alike
    weights = save_checkpoint(build_model("unet", TINY_CONFIGS["unet"]), tmp_path / "unet.safetensors",
                              metadata={"input_spacing_mm": [2.5, 5.5]})
    rows = evaluate.spacing_rows({"unet": (str(weights), 1)}, cases=2, device=torch.device("cpu"),
                                 batch_size=2, seed=5, sizes=(32, 96), n_slices=1)
    assert [row["size"] for row in rows] == [32, 96]
    assert rows[0]["spacing_mm"][0] > 2.9 * rows[1]["spacing_mm"][0]  # the same patients, a third of the pixel size
    assert 2.5 <= rows[1]["spacing_mm"][0] and rows[1]["spacing_mm"][1] <= 5.5 < rows[0]["spacing_mm"][0]
    for row in rows:
        assert {"identity", "unet_native", "unet_resampled"} <= set(row)
        assert row["unet_native"]["images"] == row["unet_resampled"]["images"] == 2
        assert np.isfinite(row["unet_resampled"]["mae"])
    assert rows[0]["unet_resampled"]["mae"] != rows[0]["unet_native"]["mae"]
    assert rows[1]["unet_resampled"]["mae"] == rows[1]["unet_native"]["mae"]
    report = {"images": 0, "device": "cpu", "gpu": None, "batch_size": 2, "split": "test", "models": {},
              "ddim_ablation": [], "paired_tests": {}, "spacing_check": {"cases_per_size": 2, "seed": 5, "rows": rows}}
    assert "| 96² (" in evaluate.markdown(report) and "U-Net resampled" in evaluate.markdown(report)


def test_perturbations_change_the_image_as_named_and_are_seeded():
    from training import evaluate

    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 4000, (3, 20, 30)).astype(np.float32)
    truth = rng.uniform(0, 1, (3, 20, 30)).astype(np.float32)
    turned_raw, turned_truth = evaluate.perturb(raw, truth, "other orientation (transposed, flipped)")
    assert turned_raw.shape == (3, 30, 20)
    np.testing.assert_array_equal(turned_raw[1], raw[1].T[::-1])
    np.testing.assert_array_equal(turned_truth[1], truth[1].T[::-1])
    stored, same_truth = evaluate.perturb(raw, truth, "8-bit storage (brightest pixel = 255)")
    assert stored.max() == 255 and np.array_equal(stored, np.rint(stored)) and np.array_equal(same_truth, truth)
    noise = "extra Rician noise, SD 3 % of the 99th percentile"
    noisy, _ = evaluate.perturb(raw, truth, noise, seed=4)
    np.testing.assert_array_equal(noisy, evaluate.perturb(raw, truth, noise, seed=4)[0])
    relative_change = np.abs(noisy - raw).mean() / np.percentile(raw, 99)
    assert 0.005 < relative_change < 0.1  # noise of about the stated size, not nothing and not a new image


def test_a_diverging_run_stops_with_a_clear_error(paired_dir, tmp_path):
    with pytest.raises(FloatingPointError, match="training loss is"):
        run_train("--model", "unet", "--data", str(paired_dir), "--out", str(tmp_path / "run"), "--model-config",
                  TINY_UNET, "--epochs", "1", "--steps-per-epoch", "6", "--batch-size", "2", "--crop", "16",
                  "--cache-size", "32", "--workers", "0", "--val-slices", "2", "--lr", "1e30", "--amp", "false")


def test_a_run_on_the_fat_reference_records_it_and_predict_feeds_its_weights_so(paired_dir, tmp_path):
    """--normalisation fat: the checkpoint names its input, load_model hands it to predict, and predict's map is the
    saved network run by hand on fat-referenced slices (which a limb tells apart from the percentile rule's)."""
    from napari_sff.inference import default_settings, load_model, predict_volume
    from napari_sff.preprocess import NORMALISATIONS, normalise_t2w

    run = tmp_path / "fat"
    run_train("--model", "unet", "--data", str(paired_dir), "--out", str(run), "--model-config", TINY_UNET,
              "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "16", "--cache-size", "32",
              "--workers", "0", "--val-slices", "2", "--normalisation", "fat")
    net, meta = load_model("unet", run / "last.safetensors", "cpu")
    assert meta["metadata"]["input_normalisation"] == NORMALISATIONS["fat"] and net.input_normalisation == "fat"
    volume = np.stack([limb(size=112, fluid=6000.0)] * 2).astype(np.float32)  # fluid past the fat rule's clip
    predicted = predict_volume(volume, (5.0, 1.5, 1.5), weights=run / "last.safetensors", device="cpu",
                               resample=False, mirror=False, batch_size=2, precision="float32").sff
    layout = torch.channels_last if default_settings("cpu").channels_last else torch.contiguous_format  # predict's
    with torch.inference_mode():
        by_hand = {method: net.to(memory_format=layout)(torch.from_numpy(normalise_t2w(volume, method)[:, None])
                                                        .to(memory_format=layout)).clamp(0, 1)[:, 0].numpy()
                   for method in ("fat", "p99")}
    np.testing.assert_allclose(predicted, by_hand["fat"], atol=1e-5)
    assert np.abs(by_hand["fat"] - by_hand["p99"]).max() > 1e-3
    with pytest.raises(ValueError, match="--normalisation must be one of p99, fat, got 'zscore'"):
        run_train("--model", "unet", "--data", str(paired_dir), "--out", str(tmp_path / "bad"), "--normalisation",
                  "zscore")


def test_unet_losses_known_answers_and_an_unknown_loss_is_refused(paired_dir, tmp_path):
    """--loss mse trains on the squared error (each pixel's posterior mean; model card section 0g); an unknown
    name is refused in one line instead of training L1 under another name."""
    from training.train import UNET_LOSSES, unet_loss

    prediction = torch.tensor([[0.1, 0.5], [0.9, 0.0]])
    target = torch.tensor([[0.0, 0.5], [0.6, 0.4]])
    assert float(unet_loss(prediction, target, "l1")) == pytest.approx((0.1 + 0 + 0.3 + 0.4) / 4)
    assert float(unet_loss(prediction, target, "mse")) == pytest.approx((0.01 + 0 + 0.09 + 0.16) / 4)
    assert set(UNET_LOSSES) == {"l1", "l1+ssim", "mse"}
    run_train("--model", "unet", "--data", str(paired_dir), "--out", str(tmp_path / "mse"), "--model-config",
              TINY_UNET, "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "16",
              "--cache-size", "32", "--workers", "0", "--val-slices", "2", "--loss", "mse")
    config = json.loads((tmp_path / "mse" / "config.json").read_text())
    assert config["loss"] == "mse"
    with pytest.raises(ValueError, match="--loss must be one of l1, l1\\+ssim, mse for the U-Net, got 'huber'"):
        run_train("--model", "unet", "--data", str(paired_dir), "--out", str(tmp_path / "bad"), "--loss", "huber")


def test_refinement_run_starts_from_given_weights_with_its_own_augmentation(paired_dir, tmp_path):
    """--init-weights: a second run begins at the first run's weights; --augmentation JSON reaches the dataset."""
    from napari_sff.models import load_checkpoint

    common = ["--model", "unet", "--data", str(paired_dir), "--model-config", TINY_UNET, "--epochs", "1",
              "--batch-size", "2", "--crop", "16", "--cache-size", "32", "--workers", "0", "--val-slices", "2"]
    run_train(*common, "--out", str(tmp_path / "first"), "--steps-per-epoch", "2")
    first, _ = load_checkpoint(tmp_path / "first" / "last.safetensors")
    # lr 0: the refined run cannot move, so its weights must be exactly the ones it started from.
    run_train(*common, "--out", str(tmp_path / "refined"), "--steps-per-epoch", "1", "--lr", "0",
              "--weight-decay", "0", "--init-weights", str(tmp_path / "first" / "last.safetensors"),
              "--augmentation", '{"noise": [0, 0], "gamma": [1, 1]}')
    refined, _ = load_checkpoint(tmp_path / "refined" / "last.safetensors")
    for name, tensor in first.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), refined.state_dict()[name].numpy(), err_msg=name)
    saved = json.loads((tmp_path / "refined" / "config.json").read_text())
    assert saved["augmentation"] == {"noise": [0, 0], "gamma": [1, 1]}
    assert saved["init_weights"].endswith("last.safetensors")


def test_refinement_from_another_architecture_is_refused(paired_dir, tmp_path):
    from napari_sff.models import CheckpointError

    common = ["--data", str(paired_dir), "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2",
              "--crop", "16", "--cache-size", "32", "--workers", "0", "--val-slices", "2", "--val-ddim-steps", "1"]
    run_train("--model", "ddpm", "--model-config", TINY_DDPM, "--out", str(tmp_path / "ddpm"), *common)
    with pytest.raises(CheckpointError, match="'ddpm' model but 'unet' was requested"):
        run_train("--model", "unet", "--model-config", TINY_UNET, "--out", str(tmp_path / "unet"), *common,
                  "--init-weights", str(tmp_path / "ddpm" / "last.safetensors"))


def test_refinement_takes_the_checkpoint_config_and_refuses_a_different_one(paired_dir, tmp_path):
    from napari_sff.models import read_metadata

    common = ["--model", "unet", "--data", str(paired_dir), "--epochs", "1", "--steps-per-epoch", "1",
              "--batch-size", "2", "--crop", "16", "--cache-size", "32", "--workers", "0", "--val-slices", "2"]
    run_train(*common, "--out", str(tmp_path / "first"), "--model-config", TINY_UNET)
    first = str(tmp_path / "first" / "last.safetensors")
    run_train(*common, "--out", str(tmp_path / "adopted"), "--init-weights", first)  # no --model-config
    assert read_metadata(tmp_path / "adopted" / "last.safetensors")["config"] == read_metadata(first)["config"]
    other = json.dumps({**TINY_CONFIGS["unet"], "base_channels": 8})
    with pytest.raises(ValueError, match="differs from the config saved in"):
        run_train(*common, "--out", str(tmp_path / "other"), "--init-weights", first, "--model-config", other)


def test_augmentation_ranges_from_json_lists_become_tuples():
    augment = training_data.Augmentation(**json.loads('{"noise": [0, 0.01], "gamma": [0.9, 1.1], "crop": null}'))
    assert augment.noise == (0, 0.01) and augment.gamma == (0.9, 1.1) and augment.crop is None


def test_autocast_dtype_follows_device_and_switch():
    config = training_train.TrainConfig()
    assert training_train.autocast_dtype(config, torch.device("cuda")) == torch.float16
    # bfloat16 only where the CPU has bf16 units (the docstring's claim); emulated bf16 is slower than float32.
    cpu = training_train.autocast_dtype(config, torch.device("cpu"))
    assert cpu == (torch.bfloat16 if cpu_reports_native_bf16() else None)
    config.amp = False
    assert training_train.autocast_dtype(config, torch.device("cuda")) is None
    assert training_train.autocast_dtype(config, torch.device("cpu")) is None


@pytest.mark.parametrize("amp", ["true", "false"])
def test_training_step_runs_under_the_autocast_it_promises(paired_dir, tmp_path, monkeypatch, amp):
    # The dtype the U-Net's first convolution computes in during a CPU training step: bfloat16 with --amp on a
    # CPU with bf16 units, float32 otherwise (and always during validation, which is not autocast).
    seen: list[tuple[bool, torch.dtype]] = []
    real_start = training_train.start_model

    def start_model(config):
        model = real_start(config)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda module, args, out: seen.append((module.training, out.dtype)))
        return model

    monkeypatch.setattr(train_loop, "start_model", start_model)  # where train() looks it up
    run_train("--model", "unet", "--data", str(paired_dir), "--out", str(tmp_path / "run"), "--model-config",
              TINY_UNET, "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "16",
              "--cache-size", "32", "--workers", "0", "--val-slices", "1", "--device", "cpu", "--amp", amp)
    in_training = {dtype for training, dtype in seen if training}
    expected = torch.bfloat16 if amp == "true" and cpu_reports_native_bf16() else torch.float32
    assert in_training == {expected}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}


def test_reproduce_builds_flags_for_every_setting(tmp_path):
    from training import reproduce

    command = reproduce.train_command("unet", tmp_path / "cache", tmp_path / "out", 7, {
        "epochs": 3, "crop": None, "augmentation": {"noise": [0, 0.05]}, "init_weights": "a/best.safetensors"})
    assert command[command.index("--augmentation") + 1] == '{"noise": [0, 0.05]}'
    assert command[command.index("--init-weights") + 1] == "a/best.safetensors"
    assert command[command.index("--epochs") + 1] == "3" and "--crop" not in command
    parsed = training_train.parse_args(command[3:])  # drop "python -m training.train"
    assert parsed.augmentation == {"noise": [0, 0.05]} and parsed.seed == 7 and parsed.epochs == 3


def reproduce_work(tmp_path: Path) -> Path:
    """A reproduce work folder whose simulated data and cache are already there (those steps are skipped)."""
    work = tmp_path / "work"
    for ready in (work / "data" / "manifest.json", work / "cache" / "cache.json"):
        ready.parent.mkdir(parents=True, exist_ok=True)
        ready.write_text("{}")
    return work


def test_reproduce_chains_refinements_and_logs_every_run(tmp_path, monkeypatch):
    from training import reproduce

    work = reproduce_work(tmp_path)
    commands = []

    def fake_run(command):  # record the step and leave what it would leave
        commands.append(command)
        out = Path(command[command.index("--out") + 1])
        if "training.train" in command:
            out.mkdir(parents=True)
            (out / "metrics.csv").write_text(f"epoch,seconds\n1,5\n2,{10 * len(out.name)}\n")
        else:  # the evaluation step
            out.write_text("{}")
            (work / "evaluation.md").write_text("table\n")
        return 1.0

    profile = {"cases": 2, "seed": 1, "evaluate": {"max_images": 4, "ddpm_max_images": None},
               "unet": {"stages": [1], "lr": 1e-3, "refine": [{"lr": 1e-4}, {"lr": 1e-5, "crop": 64}]}}
    monkeypatch.setattr(reproduce, "run", fake_run)
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    monkeypatch.setitem(reproduce.PROFILES, "test", profile)
    assert reproduce.main(["--profile", "test", "--work", str(work), "--skip-ddpm", "--no-install"]) == 0

    trains = [c for c in commands if "training.train" in c]
    flag = lambda command, name: command[command.index(name) + 1]  # noqa: E731
    assert [flag(c, "--out") for c in trains] == [str(work / n) for n in ("unet", "unet_refine", "unet_refine2")]
    assert flag(trains[1], "--init-weights") == str(work / "unet" / "best.safetensors")
    assert flag(trains[2], "--init-weights") == str(work / "unet_refine" / "best.safetensors")
    assert flag(trains[2], "--lr") == "1e-05" and flag(trains[2], "--crop") == "64"
    evaluate = next(c for c in commands if "training.evaluate" in c)
    assert flag(evaluate, "--unet") == str(work / "unet_refine2" / "best.safetensors")
    assert not (tmp_path / "docs").exists()  # the hand-edited card is left alone
    card = json.loads((work / "model_card.json").read_text())
    assert list(card["training_logs"]) == ["unet", "unet_refine", "unet_refine2"]
    assert card["training_seconds"] == {"unet": 40.0, "unet_refine": 110.0, "unet_refine2": 120.0}
    assert reproduce.training_seconds("epoch,seconds\n") is None


def test_reproduce_ends_the_unet_with_the_randomized_finetune(tmp_path, monkeypatch):
    """The shipped U-Net is the first runs' best fine-tuned on its own simulated folders (model card section 0)."""
    from training import reproduce

    work = reproduce_work(tmp_path)
    commands = []

    def fake_run(command):
        commands.append(command)
        if "simulate" in command:
            folder = Path(command[command.index("simulate") + 1])
            folder.mkdir(parents=True)
            (folder / "case0000_thigh_t2w.nii.gz").write_text("t2w")
            (folder / "manifest.json").write_text("{}")
        elif "training.data" in command:
            cache = Path(command[command.index("training.data") + 2])
            cache.mkdir(parents=True)
            (cache / "cache.json").write_text("{}")
        elif "training.train" in command:
            out = Path(command[command.index("--out") + 1])
            out.mkdir(parents=True)
            (out / "metrics.csv").write_text("epoch,seconds\n1,5\n")
        else:
            Path(command[command.index("--out") + 1]).write_text("{}")
            (work / "evaluation.md").write_text("table\n")
        return 1.0

    profile = {"cases": 2, "seed": 1, "evaluate": {"max_images": 4, "ddpm_max_images": None},
               "unet": {"stages": [1], "lr": 1e-3},
               "unet_randomized": {"data": {"r": {"cases": 3, "seed": 5, "domain": "randomized"},
                                            "d": {"cases": 1, "seed": 6, "domain": "default"}},
                                   "simulate": {"size": 64, "slices": 4},
                                   "cache": {"seed": 12, "spacing_range": [0.9, 2.3]},
                                   "train": {"lr": 5e-4, "seed": 2027, "time_budget_s": 60}}}
    monkeypatch.setattr(reproduce, "run", fake_run)
    monkeypatch.setitem(reproduce.PROFILES, "test", profile)
    assert reproduce.main(["--profile", "test", "--work", str(work), "--skip-ddpm", "--no-install"]) == 0

    flag = lambda command, name: command[command.index(name) + 1]  # noqa: E731
    simulated = [c for c in commands if "simulate" in c]
    assert [(flag(c, "--seed"), flag(c, "--domain"), flag(c, "--size")) for c in simulated] == [
        ("5", "randomized", "64"), ("6", "default", "64")]
    mix = work / "data_randomized"
    assert sorted(p.name for p in mix.iterdir()) == ["dcase0000_thigh_t2w.nii.gz", "rcase0000_thigh_t2w.nii.gz"]
    assert (mix / "rcase0000_thigh_t2w.nii.gz").read_text() == "t2w"
    cache_command = next(c for c in commands if "training.data" in c)
    assert cache_command[cache_command.index("training.data") + 1:] == [
        str(mix), str(work / "cache_randomized"), "--seed", "12", "--spacing-range", "0.9", "2.3"]
    finetune = [c for c in commands if "training.train" in c][-1]
    assert flag(finetune, "--init-weights") == str(work / "unet" / "best.safetensors")
    assert flag(finetune, "--data") == str(work / "cache_randomized") and flag(finetune, "--seed") == "2027"
    assert flag(finetune, "--time-budget-s") == "60"
    evaluate = next(c for c in commands if "training.evaluate" in c)
    assert flag(evaluate, "--unet") == str(work / "unet_randomized" / "best.safetensors")
    assert list(json.loads((work / "model_card.json").read_text())["training_logs"]) == ["unet", "unet_randomized"]


def test_intensity_ceiling_per_case_fits_never_lose_to_one_shared_fit():
    from napari_sff.simulate import simulate_cases
    from training import ceiling

    cases = list(simulate_cases(3, seed=3, size=64, n_slices=2, return_tissues=True))
    result = ceiling.intensity_ceiling(cases)
    assert result["cases"] == 3 and result["muscle_voxels"] > 100
    # Least squares: separate fits can only lower the summed squared error of one shared fit.
    assert result["sse_per_case_mapping"] <= result["sse_shared_mapping"] + 1e-9
    assert 0 < result["mae_per_case_mapping"] < 0.5 and 0 < result["mae_shared_mapping"] < 0.5


def test_the_protocol_check_recovers_a_calibration_the_protocol_explains_and_no_other():
    """Known answers: SFF = 0.1 + 0.8 x (TE / 100 ms) x intensity is fitted exactly on held-out cases once the
    protocol is known, not without it; a calibration the protocol does not explain is not helped by it."""
    from training import ceiling

    rng = np.random.default_rng(0)

    def cases(truth):
        out = []
        for _ in range(16):
            protocol = {"te_ms": rng.uniform(60, 130), "tr_ms": rng.uniform(2000, 6000),
                        "field_strength_t": float(rng.choice([1.5, 3.0])), "muscle_t2_factor": rng.uniform(0.7, 1.3)}
            x = rng.uniform(0, 1, 500)
            out.append((x, truth(x, protocol), protocol))
        return out

    explained = ceiling.protocol_ceiling(cases(lambda x, p: 0.1 + 0.8 * (p["te_ms"] / 100) * x))
    assert explained["cases_fitted"] == 8 and explained["cases_scored"] == 8
    assert explained["mae_protocol_mapping_held_out"] < 1e-9 < 0.02 < explained["mae_shared_mapping_held_out"]
    hidden = ceiling.protocol_ceiling(cases(lambda x, p: 0.1 + 0.8 * p["muscle_t2_factor"] * x))
    assert hidden["mae_protocol_mapping_held_out"] > 0.5 * hidden["mae_shared_mapping_held_out"] > 0.01
    with pytest.raises(ValueError, match="at least 10 cases.*got 9"):
        ceiling.protocol_ceiling(cases(lambda x, p: x)[:9])


def test_a_groupnorm_unet_ignores_the_slices_scale_and_a_biased_one_does_not():
    """Why the normalisation method hardly matters to the shipped U-Net: bias-free convolutions before GroupNorm
    divide out any per-slice factor. The same net without norm layers (convolutions with bias) responds."""
    from napari_sff.models import SFFUNet, UNetConfig
    from training.input_scale import scale_response

    images = np.random.default_rng(4).uniform(0, 1, (3, 32, 32)).astype(np.float32)  # below every clip
    responses = {}
    for norm in ("group", "none"):
        torch.manual_seed(0)
        net = SFFUNet(UNetConfig(base_channels=8, depth=3, norm=norm)).eval()
        with torch.no_grad():
            net.head.bias.fill_(0.5)  # maps inside (0, 1), so the clamp hides no difference
        responses[norm] = scale_response(net, images, (0.5, 0.8))
    # GroupNorm's epsilon is all that is left of the factor; the biased net's map moves over 10x as much.
    assert all(r["max"] < 1e-3 for r in responses["group"].values())
    assert all(responses["none"][k]["mean"] > 10 * responses["group"][k]["mean"] for k in ("0.5", "0.8"))


def test_input_scale_scores_the_same_weights_under_each_normalisation(paired_dir, tmp_path, tiny_weights):
    from training import input_scale

    out = tmp_path / "scale.json"
    assert input_scale.main(["--data", str(paired_dir), "--images", "4", "--weights", str(tiny_weights["unet"]),
                             "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["trained_on"] == "p99" and report["images"] == 3  # the test split: one case of 3 slices
    assert list(report["normalisations"]) == ["p99", "fat"] and "paired_p_vs_p99" in report["normalisations"]["fat"]
    assert set(report["scale_response"]) == {"0.5", "0.8", "1.25", "2"}


def test_time_budget_stops_training_and_lays_the_schedule_over_it(paired_dir, tmp_path):
    run = tmp_path / "budget"
    common = ["--model", "unet", "--data", str(paired_dir), "--out", str(run), "--model-config", TINY_UNET,
              "--epochs", "100000", "--steps-per-epoch", "5", "--batch-size", "2", "--crop", "16", "--cache-size", "32",
              "--workers", "0", "--val-slices", "1", "--lr", "0.01"]
    run_train(*common, "--time-budget-s", "1.5")
    rows = read_log(run)
    assert len(rows) < 100000 and float(rows[-1]["train_seconds"]) >= 1.5  # stopped by the clock, not by epochs
    # The learning rate followed warm-up + cosine over the 1.5 s, so it ended near 1 % of 0.01; over the 500,000
    # steps of the epochs it would still be at its peak.
    assert float(rows[-1]["lr"]) < 0.03 * 0.01
    steps = int(rows[-1]["step"])
    from napari_sff.models import read_metadata

    card = read_metadata(run / "last.safetensors")["metadata"]
    assert card["stopped_by"] == "time budget" and card["steps"] == steps
    run_train(*common, "--time-budget-s", "1.5")  # resumed with its budget spent: nothing more
    assert len(read_log(run)) == len(rows)
    run_train(*common, "--time-budget-s", "3")  # a larger budget continues where it stopped
    more = read_log(run)
    assert len(more) > len(rows) and int(more[-1]["step"]) > steps and float(more[-1]["train_seconds"]) >= 3


def test_ema_warmup_averages_short_runs_by_their_step_count():
    averaged, current = [torch.zeros(3)], [torch.ones(3)]
    training_train.ema_decay_fn(0.999, warmup=True)(averaged, current, torch.tensor(1))
    # After 1 update the decay is (1 + 1) / (10 + 1) = 2/11, so the average moves 9/11 of the way.
    np.testing.assert_allclose(averaged[0].numpy(), 9 / 11, rtol=1e-6)
    averaged = [torch.zeros(3)]
    training_train.ema_decay_fn(0.999, warmup=True)(averaged, current, torch.tensor(10**6))
    np.testing.assert_allclose(averaged[0].numpy(), 0.001, rtol=1e-4)  # the full decay once n is large


def test_cuda_autocast_is_bf16_from_ampere_on_and_fp16_before(monkeypatch):
    config = training_train.TrainConfig()
    monkeypatch.setattr(train_startup, "cuda_capability", lambda device: (9, 0))  # H100 / H200
    assert training_train.autocast_dtype(config, torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(train_startup, "cuda_capability", lambda device: (7, 5))  # T4: no bf16 tensor cores
    assert training_train.autocast_dtype(config, torch.device("cuda")) == torch.float16


def test_channels_last_and_compile_reach_the_training_step(paired_dir, tmp_path, monkeypatch):
    formats: list[bool] = []
    compiled: list[dict] = []
    real_start, real_compile = training_train.start_model, torch.compile

    def start_model(config):
        model = real_start(config)
        # A convolution with several input channels: with one, both memory formats have the same strides.
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
        conv.register_forward_hook(lambda module, args, out: formats.append(
            module.training and module.weight.is_contiguous(memory_format=torch.channels_last)
            and not module.weight.is_contiguous()))
        return model

    def compile_spy(model, **options):
        compiled.append(options)
        return real_compile(model, **options)

    monkeypatch.setattr(train_loop, "start_model", start_model)  # where train() looks it up
    monkeypatch.setattr(train_loop.torch, "compile", compile_spy)
    run_train("--model", "unet", "--data", str(paired_dir), "--out", str(tmp_path / "run"), "--model-config",
              TINY_UNET, "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "16",
              "--cache-size", "32", "--workers", "0", "--val-slices", "1", "--device", "cpu", "--amp", "false",
              "--channels-last", "true", "--compile", "true", "--compile-backend", "eager")
    assert compiled == [{"backend": "eager"}]
    assert formats and formats[0]  # the first call is the training step, in channels-last weights


def test_a_held_out_folder_goes_wholly_into_the_test_split(paired_dir, tmp_path, capsys):
    """``--test-only`` (independent phantoms, an external cohort): nothing of it may reach training."""
    from training.data.__main__ import main as cache_main

    assert cache_main([str(paired_dir), str(tmp_path / "cache"), "--size", "32", "--test-only"]) == 0
    info = json.loads((tmp_path / "cache" / training_data.CACHE_INFO).read_text())
    assert len(info["splits"]["test"]["cases"]) == 6
    assert info["splits"]["train"]["cases"] == info["splits"]["val"]["cases"] == []
    assert "train: 0 slices" in capsys.readouterr().out


def test_reproduce_recipe_is_what_the_shipped_unet_header_says_it_was_trained_with():
    """The CPU profile's last U-Net stage must replay the run that made the shipped weights: every training
    setting in the recipe equals the one the shipped checkpoint recorded, and so does the number of cases."""
    from napari_sff.models import default_weights_path, read_metadata
    from training import reproduce

    recipe = reproduce.PROFILES["cpu"]["unet_randomized"]
    header = read_metadata(default_weights_path("unet"))["metadata"]
    trained = header["training"]
    assert {key: trained[key] for key in recipe["train"]} == recipe["train"]
    cases = sum(source["cases"] for source in recipe["data"].values())
    splits = header["training_data"]["splits"]
    assert cases == sum(split["cases"] for split in splits.values())  # train + val + test cases of its cache


def test_receptive_field_known_answers():
    """Without normalisation a one-level U-Net is two 3x3 convolutions: it sees a 5x5 window. GroupNorm makes
    every output pixel depend on the whole slice."""
    from napari_sff.models import build_model
    from training.receptive_field import receptive_field

    torch.manual_seed(0)  # the weights, so that no ReLU happens to cut the window's edge
    local = receptive_field(build_model("unet", {"base_channels": 4, "depth": 1, "norm": "none"}), size=32)
    assert local["support_px"] == [5, 5] and local["radius_99pct_px"] <= 2 * 2 ** 0.5
    wide = receptive_field(build_model("unet", {"base_channels": 8, "depth": 2, "norm": "group"}), size=32)
    assert wide["support_px"] == [32, 32]


def test_feature_statistics_of_several_models_in_one_pass_match_each_alone(paired_dir, tmp_path, tiny_configs):
    """A run stamps its last and best checkpoints together: the slices are augmented once, a model whose weights
    equal an earlier one's is not run again, and each gets what it would get alone."""
    from napari_sff.models import build_model
    from training.train.provenance import feature_statistics, feature_statistics_of

    cache = training_data.build_slice_cache(paired_dir, tmp_path / "cache", size=32, seed=1)
    augmentation = training_data.Augmentation(crop=16)
    torch.manual_seed(1)
    a = build_model("unet", tiny_configs["unet"])
    torch.manual_seed(2)
    b = build_model("unet", tiny_configs["unet"])
    a_again = build_model("unet", tiny_configs["unet"])
    a_again.load_state_dict(a.state_dict())
    ddpm = build_model("ddpm", tiny_configs["ddpm"])
    calls = {id(a): 0, id(b): 0, id(a_again): 0}
    for model in (a, b, a_again):
        model.register_forward_hook(lambda module, inputs, output: calls.__setitem__(id(module), calls[id(module)] + 1))
    together = feature_statistics_of([a, b, a_again, ddpm], cache, augmentation)
    assert calls[id(a_again)] == 0 and calls[id(a)] == calls[id(b)] > 0  # equal weights: one forward pass
    alone = [feature_statistics(model, cache, augmentation) for model in (a, b)]
    assert together[0] == together[2] == alone[0] and together[1] == alone[1] and together[0] != together[1]
    assert together[3] is None  # no U-Net encoder, no features


def test_a_soup_is_the_weighted_mean_of_its_ingredients_with_their_training_records(paired_dir, tmp_path,
                                                                                     tiny_configs, capsys):
    from safetensors.torch import load_file

    from napari_sff.inference import predict_volume
    from napari_sff.models import build_model, load_checkpoint, read_metadata, save_checkpoint
    from napari_sff.preprocess import NORMALISATIONS
    from training import soup

    cache = training_data.build_slice_cache(paired_dir, tmp_path / "cache", size=32, seed=1)
    paths = []
    for seed, spacing, body in ((1, [1.0, 2.0], [0.1, 0.5]), (2, [0.8, 1.5], [0.2, 0.7])):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(build_model("unet", tiny_configs["unet"]), tmp_path / f"run{seed}.safetensors",
                                     metadata={"input_spacing_mm": spacing, "steps": seed,
                                               "input_statistics": {"body_fraction": body}}))
    out = tmp_path / "soup.safetensors"
    assert soup.main([str(out), *map(str, paths), "--cache", str(cache), "--weight", "0.25", "--weight", "0.75",
                      "--dtype", "float32"]) == 0
    a, b, mixed = (load_file(str(p)) for p in (*paths, out))
    assert mixed.keys() == a.keys()
    for key in a:  # by hand, from the files
        expected = 0.25 * a[key] + 0.75 * b[key] if a[key].is_floating_point() else a[key]
        torch.testing.assert_close(mixed[key], expected, rtol=1e-6, atol=1e-7)
    header = read_metadata(out)["metadata"]
    assert header["input_spacing_mm"] == [0.8, 2.0]  # the union of the ingredients' training data
    assert header["input_statistics"] == {"body_fraction": [0.1, 0.7]}
    assert [entry["steps"] for entry in header["soup"]] == [1, 2] and len(header["soup"][0]["sha256"]) == 64
    assert header["feature_statistics"]["slices"] > 0  # its own features, from the cache's training slices
    volume = np.random.default_rng(0).uniform(0, 900, (3, 32, 32)).astype(np.float32)
    assert predict_volume(volume, (5.0, 1.5, 1.5), "unet", weights=out, device="cpu").feature_distance.shape == (3,)
    # Refusals, one line each: another architecture config, the output among the inputs, weights not summing to 1.
    wide = save_checkpoint(build_model("unet", {**tiny_configs["unet"], "base_channels": 8}),
                           tmp_path / "wide.safetensors")
    assert soup.main([str(tmp_path / "x.safetensors"), str(paths[0]), str(wide), "--cache", str(cache)]) == 2
    assert soup.main([str(paths[0]), *map(str, paths), "--cache", str(cache)]) == 2
    assert soup.main([str(tmp_path / "y.safetensors"), *map(str, paths), "--cache", str(cache),
                      "--weight", "0.5", "--weight", "0.6"]) == 2
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()
    before = out.read_bytes()
    assert soup.main([str(out), *map(str, paths), "--cache", str(cache)]) == 2 and out.read_bytes() == before
    assert soup.main([str(tmp_path / "z.safetensors"), *map(str, paths)]) == 2  # a U-Net soup needs --cache
    fat = save_checkpoint(load_checkpoint(paths[1])[0], tmp_path / "fat.safetensors", config=tiny_configs["unet"],
                          metadata={"input_normalisation": NORMALISATIONS["fat"]})  # reads another input
    capsys.readouterr()
    assert soup.main([str(tmp_path / "f.safetensors"), str(paths[0]), str(fat), "--cache", str(cache)]) == 2
    assert "different input normalisations (fat, p99)" in capsys.readouterr().err
    # DDPMs average the same way (no feature statistics, so no cache); one architecture per soup.
    ddpms = []
    for seed in (3, 4):
        torch.manual_seed(seed)
        ddpms.append(save_checkpoint(build_model("ddpm", tiny_configs["ddpm"]), tmp_path / f"ddpm{seed}.safetensors"))
    assert soup.main([str(tmp_path / "d.safetensors"), *map(str, ddpms)]) == 0
    a, b, mixed = (load_file(str(p)) for p in (*ddpms, tmp_path / "d.safetensors"))
    key = next(k for k in a if a[k].is_floating_point() and a[k].numel() > 1)
    torch.testing.assert_close(mixed[key].float(), ((a[key] + b[key]) / 2).half().float())  # stored as float16
    assert soup.main([str(tmp_path / "m.safetensors"), str(paths[0]), str(ddpms[0]), "--cache", str(cache)]) == 2
