"""The napari-sff command line: simulate, info, predict."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_sff import cli, io


@pytest.fixture
def t2w_file(tmp_path):
    affine = np.array([[-0.9, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 5.0, 30], [0, 0, 0, 1]])
    data = np.random.default_rng(0).integers(0, 3000, size=(20, 18, 3)).astype(np.int16)
    path = tmp_path / "scan_t2w.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_simulate_writes_cases_and_manifest(tmp_path):
    out = tmp_path / "sim"
    assert cli.main(["simulate", str(out), "--cases", "2", "--seed", "3", "--size", "48", "--slices", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["cases"]) == 2
    for case in manifest["cases"]:
        shapes = {nib.load(out / name).shape for name in case["files"].values()}
        affines = [nib.load(out / name).affine for name in case["files"].values()]
        assert len(shapes) == 1 and all(np.allclose(a, affines[0]) for a in affines)
        # Known answer across files, read with nibabel: each muscle's mean SFF is the one in the manifest.
        sff, labels = (np.asanyarray(nib.load(out / case["files"][kind]).dataobj) for kind in ("sff", "labels"))
        present = {int(k) for k in np.unique(labels)} - {0}
        assert present and present <= {int(k) for k in case["label_names"]}
        for label in present:
            name = case["label_names"][str(label)]
            assert sff[labels == label].mean() == pytest.approx(case["params"]["muscle_sff"][name], abs=1e-3)
    # a second run into the same folder refuses instead of overwriting
    assert cli.main(["simulate", str(out), "--cases", "1", "--size", "48", "--slices", "3"]) == 2


def test_simulate_tissues_writes_the_tissue_class_map_the_evaluation_reads(tmp_path):
    from napari_sff.io.label_names import read_label_names
    from napari_sff.simulate import simulate_case

    out = tmp_path / "sim"
    args = ["simulate", str(out), "--cases", "1", "--seed", "3", "--size", "48", "--slices", "3"]
    assert cli.main([*args, "--tissues"]) == 0
    case = json.loads((out / "manifest.json").read_text())["cases"][0]
    assert set(case["files"]) == {"t2w", "sff", "labels", "tissues", "tissue_names"}
    from napari_sff import io

    tissues = io.read_nifti(out / case["files"]["tissues"]).array
    names = read_label_names(out / case["files"]["tissue_names"])
    # The same case regenerated from its recorded seed: the file holds the simulator's own map.
    again = simulate_case(case["params"]["anatomy"], size=48, n_slices=3, seed=case["params"]["seed"],
                          return_tissues=True)
    np.testing.assert_array_equal(tissues, again.tissues)
    present = {names[int(k)] for k in np.unique(tissues) if k}
    assert {"muscle", "subcutaneous_fat"} <= present
    labels = io.read_nifti(out / case["files"]["labels"]).array
    muscle = next(k for k, v in names.items() if v == "muscle")
    assert (tissues[labels > 0] == muscle).mean() > 0.7
    # Without --tissues nothing more is written.
    plain = tmp_path / "plain"
    assert cli.main(["simulate", str(plain), *args[2:]]) == 0
    assert not list(plain.glob("*_tissues*"))


def test_simulate_muscle_prior_is_recorded_and_gives_the_simulators_cases(tmp_path):
    from napari_sff import io
    from napari_sff.simulate import simulate_case

    out = tmp_path / "sim"
    args = ["simulate", str(out), "--cases", "1", "--seed", "5", "--size", "32", "--slices", "1",
            "--domain", "randomized", "--muscle-prior", "population"]
    assert cli.main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    case = manifest["cases"][0]
    assert manifest["muscle_prior"] == case["params"]["muscle_prior"] == "population"
    again = simulate_case(case["params"]["anatomy"], size=32, n_slices=1, seed=case["params"]["seed"],
                          domain="randomized", muscle_prior="population")
    np.testing.assert_allclose(io.read_nifti(out / case["files"]["sff"]).array,
                               io.Volume.from_array(again.sff, again.spacing).array, atol=1e-6)
    with pytest.raises(SystemExit):
        cli.main([*args[:-1], "lean"])
    from napari_sff.simulate import MUSCLE_PRIORS

    for name in MUSCLE_PRIORS:  # the option's choices (written out: the parser imports no simulator) are all
        assert cli.build_parser().parse_args(["simulate", "x", "--muscle-prior", name]).muscle_prior == name


def test_simulate_anatomies_rotate_as_named_and_are_recorded(tmp_path, capsys):
    out = tmp_path / "sim"
    args = ["simulate", str(out), "--cases", "2", "--seed", "5", "--size", "16", "--slices", "1",
            "--anatomies", "pelvis, calf"]
    assert cli.main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["anatomies"] == ["pelvis", "calf"]
    assert sorted(case["params"]["anatomy"] for case in manifest["cases"]) == ["calf", "pelvis"]
    plain = tmp_path / "plain"
    assert cli.main(["simulate", str(plain), "--cases", "1", "--size", "16", "--slices", "1"]) == 0
    assert "anatomies" not in json.loads((plain / "manifest.json").read_text())  # the default stays unrecorded
    with pytest.raises(SystemExit):
        cli.main([*args[:-1], "pelvis,knee"])
    assert "unknown anatomy 'knee'; valid anatomies: thigh, calf, abdomen, random, pelvis" in capsys.readouterr().err


def test_predict_precision_choices_are_the_inference_precisions():
    from napari_sff.inference.devices import PRECISIONS

    assert cli.PRECISION_CHOICES == ("auto", *PRECISIONS)  # written out: the parser imports no inference code
    assert cli.build_parser().parse_args(["predict", "in.nii", "-o", "out.nii", "--precision", "float32"]).precision \
        == "float32"


def test_info_reports_devices_and_weights(capsys):
    assert cli.main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "cpu" in report["devices"]
    assert set(report["weights"]) == {"unet", "ddpm"}
    for weights in report["weights"].values():  # the pixel sizes the shipped models were trained on
        low, high = weights["input_spacing_mm"]
        assert 0.5 < low < high < 3.0
    assert cli.main(["info"]) == 0
    low, high = report["weights"]["unet"]["input_spacing_mm"]
    assert f"trained on {low:.2f}-{high:.2f} mm pixels" in capsys.readouterr().out
    assert report["versions"]["torch"]


@pytest.mark.parametrize("arch", ["unet", "ddpm"])
def test_predict_writes_float32_map_on_the_input_grid(t2w_file, constant_weights, tmp_path, arch):
    out = tmp_path / f"pred_{arch}.nii.gz"
    args = ["predict", str(t2w_file), "-o", str(out), "--model", arch, "--weights", str(constant_weights[arch]),
            "--device", "cpu", "--ddim-steps", "2", "--samples", "2", "--quiet"]
    assert cli.main(args) == 0
    source, written = nib.load(t2w_file), nib.load(out)
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)
    assert written.get_data_dtype().newbyteorder("=") == np.float32
    values = np.asanyarray(written.dataobj)
    if arch == "unet":
        np.testing.assert_array_equal(values, np.float32(0.3))  # every voxel, every slice
    else:
        assert np.abs(values - 0.5).max() < 0.05 and values.std() > 0  # two noisy samples, not a constant
        spread = np.asanyarray(nib.load(tmp_path / f"pred_{arch}_std.nii.gz").dataobj)
        assert spread.shape == source.shape and 0 < spread.max() < 0.05
    assert (tmp_path / f"pred_{arch}_std.nii.gz").exists() == (arch == "ddpm")
    assert cli.main(args) == 2  # refuses to replace its output without --overwrite
    assert cli.main([*args, "--overwrite"]) == 0


def test_predict_resamples_pixels_outside_the_training_range_and_says_so(t2w_file, tiny_configs, tmp_path, capsys):
    from napari_sff.models import build_model, save_checkpoint

    # The file's 0.9 mm pixels are finer than this checkpoint's 1.5-2 mm: predicted at 1.5 mm, written at 0.9 mm.
    weights = save_checkpoint(build_model("unet", tiny_configs["unet"]), tmp_path / "coarse.safetensors",
                              metadata={"input_spacing_mm": [1.5, 2.0]})
    out = tmp_path / "pred.nii.gz"
    args = ["predict", str(t2w_file), "-o", str(out), "--weights", str(weights), "--device", "cpu", "--quiet"]
    assert cli.main(args) == 0
    assert "predicted at 1.50 × 1.50 mm" in capsys.readouterr().out
    assert nib.load(out).shape == nib.load(t2w_file).shape
    assert cli.main([*args, "--overwrite", "--no-resample"]) == 0
    assert "predicted at" not in capsys.readouterr().out


def test_predict_means_each_slice_with_its_mirror_image_unless_told_not_to(t2w_file, tiny_weights, tmp_path, capsys):
    from napari_sff import io
    from napari_sff.inference import predict_volume

    source = io.read_nifti(t2w_file)
    args = ["predict", str(t2w_file), "--weights", str(tiny_weights["unet"]), "--device", "cpu", "--quiet"]
    for extra, mirror in (([], True), (["--no-mirror"], False)):
        out = tmp_path / f"mirror_{mirror}.nii.gz"
        assert cli.main([*args, "-o", str(out), *extra]) == 0
        assert ("mean with the mirrored slices" in capsys.readouterr().out) is mirror
        expected = predict_volume(source.array, source.spacing, "unet", weights=tiny_weights["unet"], device="cpu",
                                  mirror=mirror).sff
        np.testing.assert_allclose(io.read_nifti(out).array, expected, atol=1e-5)
    maps = [io.read_nifti(tmp_path / f"mirror_{mirror}.nii.gz").array for mirror in (True, False)]
    assert np.abs(maps[0] - maps[1]).max() > 1e-3  # the two really differ: the flag reached the model


def test_predict_says_when_it_measures_a_device_s_settings_and_quiet_keeps_it_silent(t2w_file, tiny_weights, tmp_path,
                                                                                     monkeypatch, capsys):
    """A first calibration takes seconds (the DDPM's up to a minute) before the progress bar moves: one line says
    what is happening and how to skip it; the next run finds the cache and says nothing; --quiet says nothing."""
    monkeypatch.setenv("NAPARI_SFF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NAPARI_SFF_CALIBRATE", raising=False)
    args = ["predict", str(t2w_file), "--weights", str(tiny_weights["unet"]), "--device", "cpu"]
    assert cli.main([*args, "-o", str(tmp_path / "a_sff.nii.gz")]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "fastest settings" in line]
    assert len(said) == 1 and "U-Net" in said[0] and "NAPARI_SFF_CALIBRATE=0" in said[0]
    assert str(tmp_path / "cache") in said[0]
    assert cli.main([*args, "-o", str(tmp_path / "b_sff.nii.gz")]) == 0  # calibrated: nothing to say
    assert "fastest settings" not in capsys.readouterr().err
    monkeypatch.setenv("NAPARI_SFF_CACHE_DIR", str(tmp_path / "other_cache"))
    assert cli.main([*args, "-o", str(tmp_path / "c_sff.nii.gz"), "--quiet"]) == 0
    assert "fastest settings" not in capsys.readouterr().err


def test_predict_never_writes_over_its_input(t2w_file, tiny_weights, capsys):
    before = t2w_file.read_bytes()
    code = cli.main(["predict", str(t2w_file), "-o", str(t2w_file), "--weights", str(tiny_weights["unet"]),
                     "--overwrite", "--quiet"])
    assert code == 2 and t2w_file.read_bytes() == before
    assert "input" in capsys.readouterr().err


def test_predict_bad_weights_give_one_line_errors(t2w_file, tiny_weights, tmp_path, capsys):
    pickle_file = tmp_path / "model.pt"
    import torch

    torch.save({"w": torch.zeros(1)}, pickle_file)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(tiny_weights["unet"].read_bytes()[:100])
    for weights, arch in ((pickle_file, "unet"), (corrupt, "unet"), (tiny_weights["ddpm"], "unet")):
        code = cli.main(["predict", str(t2w_file), "-o", str(tmp_path / "x.nii.gz"), "--model", arch,
                         "--weights", str(weights), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and str(weights.name) in err


def test_predict_on_an_rgb_nifti_is_one_line_without_traceback(tiny_weights, tmp_path, capsys):
    rgb = np.zeros((8, 8, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "RGB.nii.gz")
    code = cli.main(["predict", str(tmp_path / "RGB.nii.gz"), "-o", str(tmp_path / "x.nii.gz"), "--weights",
                     str(tiny_weights["unet"]), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("napari-sff predict: error: ") and "RGB.nii.gz is an RGB image" in err
    assert "convert it to one channel first" in err and not (tmp_path / "x.nii.gz").exists()


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "napari_sff.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "predict" in result.stdout and "simulate" in result.stdout


def test_predict_works_out_of_the_box_with_shipped_weights(tmp_path):
    """No --weights: the U-Net shipped inside the package runs on a simulated case and beats chance."""
    from napari_sff.models import default_weights_path, has_default_weights, read_metadata
    from napari_sff.sample_data import write_cases

    assert has_default_weights("unet") and has_default_weights("ddpm")
    for arch in ("unet", "ddpm"):
        header = read_metadata(default_weights_path(arch))
        assert header["arch"] == arch and header["metadata"]["validation"]["images"] > 0
    write_cases(tmp_path, 1, seed=123, size=128, n_slices=3)
    [t2w] = sorted(tmp_path.glob("*_t2w.nii.gz"))
    out = tmp_path / "pred_sff.nii.gz"
    assert cli.main(["predict", str(t2w), "-o", str(out), "--device", "cpu", "--quiet"]) == 0
    predicted = io.read_nifti(out).array
    truth = io.read_nifti(str(t2w).replace("_t2w", "_sff")).array
    body = truth > 0
    assert np.corrcoef(predicted[body], truth[body])[0, 1] > 0.5



def test_what_was_assumed_is_one_warning_line(tiny_weights, tmp_path, capsys):
    """Complex voxels are read as magnitude: the CLI says so on one line, then predicts."""
    data = (np.full((8, 8, 3), 30.0) * np.exp(1j * 0.7)).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 5.0, 1.0])), tmp_path / "complex.nii.gz")
    code = cli.main(["predict", str(tmp_path / "complex.nii.gz"), "-o", str(tmp_path / "x.nii.gz"), "--weights",
                     str(tiny_weights["unet"]), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and (tmp_path / "x.nii.gz").exists()
    assert len(err) == 1 and err[0].startswith("napari-sff predict: warning: ") and "magnitude" in err[0]
