"""Cohort plumbing: input walking and output mirroring, shares that cover every file once, skip / fail / resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_sff import cohort


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_folder_is_walked_and_outputs_mirror_it(tmp_path):
    _touch(tmp_path / "in", "a/s1_t2w.nii.gz", "a/b/s2_t2w.nii", "c/s3_t2w.nii.gz", "notes.txt", "c/x.json")
    items = cohort.collect_inputs([tmp_path / "in"])
    assert [str(item.relative) for item in items] == ["a/b/s2_t2w.nii", "a/s1_t2w.nii.gz", "c/s3_t2w.nii.gz"]
    outputs = [item.output(tmp_path / "out") for item in items]
    assert outputs == [tmp_path / "out/a/b/s2_t2w_sff.nii.gz", tmp_path / "out/a/s1_t2w_sff.nii.gz",
                       tmp_path / "out/c/s3_t2w_sff.nii.gz"]


def test_glob_keeps_the_tree_below_its_base_and_duplicates_count_once(tmp_path):
    _touch(tmp_path, "in/x/s1_t2w.nii.gz", "in/y/s2_t2w.nii.gz", "in/y/s2_sff.nii.gz")
    pattern = str(tmp_path / "in" / "*" / "*_t2w.nii.gz")
    items = cohort.collect_inputs([pattern, tmp_path / "in/x/s1_t2w.nii.gz"])
    assert sorted(str(item.relative) for item in items) == ["x/s1_t2w.nii.gz", "y/s2_t2w.nii.gz"]


def test_a_name_that_matches_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="matches no file"):
        cohort.collect_inputs([str(tmp_path / "*.nii.gz")])
    with pytest.raises(FileNotFoundError, match="no such file"):
        cohort.collect_inputs([tmp_path / "missing.nii.gz"])


@pytest.mark.parametrize("n_items, world", [(7, 2), (5, 3), (2, 4)])
def test_shares_cover_every_item_exactly_once(n_items, world):
    items = [cohort.CohortItem(Path(f"/x/{k}.nii.gz"), Path(f"{k}.nii.gz")) for k in range(n_items)]
    shares = [cohort.my_share(items, rank, world) for rank in range(world)]
    flat = [item for share in shares for item in share]
    assert sorted(flat, key=str) == sorted(items, key=str) and len(flat) == n_items


def test_shard_within_torchrun_ranks():
    assert cohort.rank_and_world(None, {"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2)
    assert cohort.rank_and_world("2/3", {}) == (2, 3)
    assert cohort.rank_and_world("1/3", {"RANK": "1", "WORLD_SIZE": "2"}) == (3, 6)
    with pytest.raises(ValueError, match="K/N"):
        cohort.parse_shard("2of3")
    with pytest.raises(ValueError, match="0 <= K < N"):
        cohort.parse_shard("3/3")


def test_run_skips_finished_records_failures_and_goes_on(tmp_path):
    names = ["a_t2w.nii.gz", "bad_t2w.nii.gz", "c_t2w.nii.gz", "done_t2w.nii.gz"]
    _touch(tmp_path / "in", *names)
    _touch(tmp_path / "out", "done_t2w_sff.nii.gz")
    items = cohort.collect_inputs([tmp_path / "in"])
    order = []

    def read(path: Path) -> str:
        if path.name.startswith("bad"):
            raise ValueError(f"{path.name}: not a readable NIfTI file")
        return path.name

    def predict(volume: str) -> str:
        order.append(volume)
        return volume.upper()

    def write(volume: str, prediction: str, output: Path) -> list[Path]:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(prediction)
        return [output]

    summary = cohort.run_cohort(items, tmp_path / "out", read=read, predict=predict, write=write)
    assert order == ["a_t2w.nii.gz", "c_t2w.nii.gz"]  # in order, the bad one left out, the finished one skipped
    assert sorted(p.name for p in summary.done) == ["a_t2w_sff.nii.gz", "c_t2w_sff.nii.gz"]
    assert [p.name for p in summary.skipped] == ["done_t2w_sff.nii.gz"]
    assert [(p.name, reason) for p, reason in summary.failed] == [
        ("bad_t2w.nii.gz", "bad_t2w.nii.gz: not a readable NIfTI file")]
    assert (tmp_path / "out/c_t2w_sff.nii.gz").read_text() == "C_T2W.NII.GZ"
    lines = summary.lines()
    assert lines[0].startswith("2 done, 1 skipped (already there), 1 failed")
    assert lines[1] == "failed: " + str(tmp_path / "in/bad_t2w.nii.gz") + ": bad_t2w.nii.gz: not a readable NIfTI file"
    again = cohort.run_cohort(items, tmp_path / "out", read=read, predict=predict, write=write, overwrite=True)
    assert len(again.done) == 3 and not again.skipped  # --overwrite redoes the finished ones
    assert not again.flagged and len(again.lines()) == 2


def test_the_summary_ends_with_the_inputs_the_model_found_unlike_its_training_data(tmp_path):
    from types import SimpleNamespace

    _touch(tmp_path / "in", "a_t2w.nii.gz", "odd_t2w.nii.gz")
    items = cohort.collect_inputs([tmp_path / "in"])

    def predict(path: Path):  # what predict_volume returns: a warning for the odd one
        return SimpleNamespace(out_of_distribution="unlike" if path.name.startswith("odd") else None)

    def write(volume, prediction, output: Path) -> list[Path]:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("x")
        return [output]

    summary = cohort.run_cohort(items, tmp_path / "out", read=lambda path: path, predict=predict, write=write)
    assert summary.flagged == [tmp_path / "in" / "odd_t2w.nii.gz"]
    assert summary.lines()[1:] == [
        "1 predicted volume(s) lie outside what the model was trained on (the warnings above say how); read their "
        "maps with caution:", f"flagged: {tmp_path / 'in' / 'odd_t2w.nii.gz'}"]


# ----------------------------------------------------------------------------------- the command over a cohort
import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from napari_sff import cli, io  # noqa: E402


def _t2w_tree(root: Path, names: list[str], shape=(12, 10, 3)) -> list[Path]:
    paths = []
    rng = np.random.default_rng(0)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.integers(10, 3000, size=shape).astype(np.int16)
        nib.save(nib.Nifti1Image(data, np.diag([0.9, 0.9, 5.0, 1.0])), path)
        paths.append(path)
    return paths


def _args(inputs, out, weights, *extra) -> list[str]:
    return ["predict", *map(str, inputs), "-o", str(out), "--weights", str(weights), "--device", "cpu", "--quiet",
            *extra]


def test_a_tree_with_a_corrupt_file_predicts_the_rest_and_exits_1(tmp_path, constant_weights, capsys):
    _t2w_tree(tmp_path / "in", ["a/s1_t2w.nii.gz", "b/s2_t2w.nii.gz"])
    (tmp_path / "in" / "b" / "bad_t2w.nii.gz").write_bytes(b"not a NIfTI file")
    code = cli.main(_args([tmp_path / "in"], tmp_path / "out", constant_weights["unet"]))
    out, err = capsys.readouterr()
    assert code == 1
    assert "2 done, 0 skipped (already there), 1 failed" in out
    failed = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "bad_t2w.nii.gz" in failed[0] and "not a readable NIfTI" in failed[0]
    for name in ("a/s1_t2w_sff.nii.gz", "b/s2_t2w_sff.nii.gz"):
        image = nib.load(tmp_path / "out" / name)
        assert image.shape == (12, 10, 3) and np.allclose(image.get_fdata(), 0.3, atol=1e-6)
        np.testing.assert_allclose(image.affine, np.diag([0.9, 0.9, 5.0, 1.0]))
    assert not (tmp_path / "out" / "b" / "bad_t2w_sff.nii.gz").exists()
    # Each map's sidecar says how it was made, and nothing of where it came from (no input path).
    sidecar = (tmp_path / "out" / "a" / "s1_t2w_sff.json").read_text()
    info = json.loads(sidecar)
    assert (info["model"], info["slices"], info["mirrored"], info["outputs"]) == (
        "unet", 3, True, ["s1_t2w_sff.nii.gz"])
    assert len(info["weights_sha256"]) == 64 and str(tmp_path / "in") not in sidecar and "s1_t2w.nii" not in sidecar
    # One QC row per input: the failure with its reason, the maps with what their sidecars say.
    assert f"QC table (one row per input, from each map's .json sidecar): {tmp_path / 'out' / 'qc.csv'}" in out
    rows = {row["output"]: row for row in csv.DictReader((tmp_path / "out" / "qc.csv").open())}
    assert set(rows) == {"a/s1_t2w_sff.nii.gz", "b/s2_t2w_sff.nii.gz", "b/bad_t2w_sff.nii.gz"}
    assert rows["b/bad_t2w_sff.nii.gz"]["status"] == "failed" and "not a readable NIfTI" in rows[
        "b/bad_t2w_sff.nii.gz"]["reason"]
    assert [(rows[k]["status"], rows[k]["slices"], rows[k]["mirrored"]) for k in sorted(rows)[:1]] == [
        ("done", "3", "True")]
    assert cli.main(_args([tmp_path / "in" / "a" / "s1_t2w.nii.gz", tmp_path / "in" / "b" / "s2_t2w.nii.gz"],
                          tmp_path / "out", constant_weights["unet"])) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "out" / "qc.csv").open()))  # the rerun's share: made earlier, still read
    assert [(row["status"], row["model"]) for row in rows] == [("skipped (made earlier)", "unet")] * 2


def test_two_shards_write_every_file_exactly_once(tmp_path, constant_weights, capsys):
    inputs = _t2w_tree(tmp_path / "in", [f"s{k}_t2w.nii.gz" for k in range(5)])
    written = []
    for shard in ("0/2", "1/2"):
        before = set((tmp_path / "out").glob("*.nii.gz"))
        assert cli.main(_args([str(tmp_path / "in" / "*_t2w.nii.gz")], tmp_path / "out", constant_weights["unet"],
                              "--shard", shard)) == 0
        written.append(set((tmp_path / "out").glob("*.nii.gz")) - before)
        assert "0 skipped" in capsys.readouterr().out
        rank, world = shard.split("/")
        table = tmp_path / "out" / f"qc.rank{rank}of{world}.csv"  # each share its own table: no two writers
        assert {row["output"] for row in csv.DictReader(table.open())} == {p.name for p in written[-1]}
    assert not (tmp_path / "out" / "qc.csv").exists()
    assert not written[0] & written[1]
    assert {p.name for p in written[0] | written[1]} == {f"{p.name[:-7]}_sff.nii.gz" for p in inputs}
    assert len(written[0]) == 3 and len(written[1]) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_ranks_share_the_cohort_exactly_once(tmp_path, constant_weights):
    _t2w_tree(tmp_path / "in", [f"s{k}_t2w.nii.gz" for k in range(5)])
    script = Path(sys.executable).parent / "napari-sff"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
               "--no-python", str(script), *_args([tmp_path / "in"], tmp_path / "out", constant_weights["unet"])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    done = {}
    for line in result.stdout.splitlines():
        if line.startswith("rank ") and " done, " in line:
            rank = line.split(":")[0]
            done[rank] = int(line.split(": ")[1].split(" done")[0])
    assert done == {"rank 0/2": 3, "rank 1/2": 2}  # item i to rank i % 2: together every file, none twice
    assert len(list((tmp_path / "out").glob("*_sff.nii.gz"))) == 5


def test_a_killed_run_resumes_with_no_half_written_file(tmp_path, constant_weights):
    names = [f"s{k:02d}_t2w.nii.gz" for k in range(8)]
    _t2w_tree(tmp_path / "in", names, shape=(96, 96, 12))
    command = [sys.executable, "-m", "napari_sff.cli", *_args([tmp_path / "in"], tmp_path / "out",
                                                              constant_weights["unet"])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "out").glob("*_sff.nii.gz")):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {p.name for p in (tmp_path / "out").glob("*_sff.nii.gz")}
    assert before  # the kill came after at least one output
    for path in (tmp_path / "out").glob("*_sff.nii.gz"):  # what a killed run published is whole
        assert nib.load(path).get_fdata().shape == (96, 96, 12)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{8 - len(before)} done, {len(before)} skipped" in rerun.stdout
    outputs = sorted((tmp_path / "out").glob("*_sff.nii.gz"))
    assert [p.name for p in outputs] == [f"{name[:-7]}_sff.nii.gz" for name in names]
    for path in outputs:
        assert np.allclose(io.read_nifti(path).array, 0.3, atol=1e-6)


def test_named_files_mirror_their_common_folder_and_collisions_are_refused(tmp_path):
    _touch(tmp_path, "x/a/s1_t2w.nii.gz", "x/b/s1_t2w.nii.gz", "y/s1_t2w.nii.gz")
    items = cohort.collect_inputs([tmp_path / "x/a/s1_t2w.nii.gz", tmp_path / "x/b/s1_t2w.nii.gz"])
    assert [str(item.relative) for item in items] == ["a/s1_t2w.nii.gz", "b/s1_t2w.nii.gz"]
    with pytest.raises(ValueError, match="would write the same output"):
        cohort.collect_inputs([tmp_path / "x/a", tmp_path / "y"])


def test_groups_of_volumes_go_to_predict_many_and_a_failing_group_falls_back(tmp_path):
    _touch(tmp_path / "in", *[f"s{k}_t2w.nii.gz" for k in range(5)])
    items = cohort.collect_inputs([tmp_path / "in"])
    calls = []

    def predict_many(volumes):
        calls.append(list(volumes))
        if "s3_t2w.nii.gz" in volumes:
            raise RuntimeError("out of memory")
        return [v.upper() for v in volumes]

    def predict(volume):
        if volume == "s3_t2w.nii.gz":
            raise RuntimeError("this one fails alone too")
        return volume.upper()

    def write(volume, prediction, output):
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(prediction)
        return [output]

    summary = cohort.run_cohort(items, tmp_path / "out", read=lambda p: p.name, predict=predict, write=write,
                                predict_many=predict_many, group=2)
    assert calls == [["s0_t2w.nii.gz", "s1_t2w.nii.gz"], ["s2_t2w.nii.gz", "s3_t2w.nii.gz"]]  # s4: a group of one
    assert sorted(p.name for p in summary.done) == ["s0_t2w_sff.nii.gz", "s1_t2w_sff.nii.gz", "s2_t2w_sff.nii.gz",
                                                    "s4_t2w_sff.nii.gz"]
    assert [(p.name, reason) for p, reason in summary.failed] == [("s3_t2w.nii.gz", "this one fails alone too")]


def test_grouped_volumes_through_the_command(tmp_path, constant_weights, capsys):
    _t2w_tree(tmp_path / "in", ["a_t2w.nii.gz", "b_t2w.nii.gz", "c_t2w.nii.gz"])
    assert cli.main(_args([tmp_path / "in"], tmp_path / "out", constant_weights["unet"], "--group-volumes", "2")) == 0
    assert "3 done, 0 skipped" in capsys.readouterr().out
    for name in ("a", "b", "c"):
        assert np.allclose(io.read_nifti(tmp_path / "out" / f"{name}_t2w_sff.nii.gz").array, 0.3, atol=1e-6)


def test_dicom_series_of_several_subjects_make_a_cohort_through_a_glob(tmp_path, constant_weights, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    import dicom_factory

    volume = np.random.default_rng(1).integers(10, 3000, size=(3, 12, 10)).astype(np.float32)
    for subject in ("s1", "s2"):
        dicom_factory.write_series(tmp_path / "studies" / subject, volume, study=dicom_factory.Study())
    assert cli.main(_args([str(tmp_path / "studies" / "*")], tmp_path / "out", constant_weights["unet"])) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().out
    for subject in ("s1", "s2"):
        assert np.allclose(io.read_nifti(tmp_path / "out" / f"{subject}_sff.nii.gz").array, 0.3, atol=1e-6)
