"""The GPU job's CPU dry run (every phase, tiny) and the fair-DDPM ablation command on tiny settings."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest
from conftest import TINY_CONFIGS

from training import ddpm_ablation, gpu_job
from training.gpu_job import runner


def test_dry_run_reports_every_phase_and_writes_loadable_weights(tmp_path):
    from napari_sff.models import load_checkpoint

    out = tmp_path / "out"
    report = gpu_job.run_job(out, work=tmp_path / "work", dry_run=True)
    saved = json.loads((out / "gpu_job.json").read_text())
    assert list(saved["phases"]) == list(gpu_job.PHASES)
    for name, result in saved["phases"].items():
        assert result["status"] == "ok" or result["error"], name
    phases = report["phases"]
    assert all(result["status"] == "ok" for result in phases.values()), {k: v.get("error") for k, v in phases.items()}
    assert phases["environment"]["gemm"]["tflops"] > 0
    assert report["not_returnable"] == [] and "would not bring back" not in (out / "gpu_job.md").read_text()
    # Known answer: 6 simulated cases of 3 x 32 x 32, every slice kept, split by case. At 32² the pixels (field of view
    # / 32, over 6 mm) are coarser than the 3-6 mm slices, so the cache slices along an in-plane axis: 32 per case.
    assert phases["simulate"]["cases"] == 6
    assert sum(split["slices"] for split in phases["cache"]["splits"].values()) == 6 * 32
    for arch in ("unet", "ddpm"):
        trained = phases[arch]
        assert trained["stopped_by"] == "time budget" and trained["steps"] >= 1
        assert trained["train_step_seconds"] >= gpu_job.PROFILES["dry"][arch]["train_s"]
        # Where the training time went: the first step (start-up) and the waits for the loader, both within it.
        assert 0 < trained["first_step_seconds"] <= trained["train_step_seconds"]
        assert 0 < trained["loader_wait_seconds"] < trained["train_step_seconds"]
        model, header = load_checkpoint(out / f"{arch}.safetensors", expected_arch=arch)
        assert header["metadata"]["steps"] == trained["steps"]
        expected = {"unet": TINY_CONFIGS["unet"], "ddpm": {**TINY_CONFIGS["ddpm"],
                                                         "attention_levels": (False, False, False, True)}}[arch]
        assert {k: header["config"][k] for k in expected} == {k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in expected.items()}
        assert phases["evaluate"]["models"][arch]["mae"] >= 0
    # The independent check: the phantoms scored like the test split, plus ROI means, tissues and the targets.
    phantoms = phases["phantoms"]
    assert phantoms["cases"] == 2 and phantoms["images"] == 4
    assert {"identity", "unet", "ddpm"} <= set(phantoms["models"]) and phantoms["models"]["unet"]["mae"] >= 0
    assert phantoms["rois"]["rois"] > 0 and {"identity", "unet", "ddpm"} <= set(phantoms["tissues"]["body"])
    assert set(phantoms["targets"]["met"]) == {"unet_r", "unet_mae_vs_identity", "unet_roi_mae", "ddpm_r",
                                                "ddpm_better_than_identity"}
    assert "targets met:" in (out / "gpu_job.md").read_text()
    bench = phases["benchmark"]
    for row in bench["unet"] + bench["ddpm"]:
        assert row.get("ms_per_slice", 0) > 0 or row["error"], row
    for network in ("unet", "ddpm"):  # the variants without a compiler first, then the compiled ones
        compiles = ["torch.compile" in row["variant"] for row in bench[network]]
        assert compiles == sorted(compiles) and any(compiles), bench[network]
        assert all(row["first_call_s"] > 0 for row in bench[network] if "ms_per_slice" in row)
    graphs = [row for row in bench["unet"] if "CUDA graph" in row["variant"]]
    assert graphs and all("CUDA" in row["error"] for row in graphs)  # no GPU here: said so, not skipped silently
    assert bench["best"]["unet"]["meets_target"] is None  # tiny CPU numbers are not compared with GPU targets
    assert [row["config"] for row in phases["ablation"]["rows"]] == ["v-linear", "eps-linear"]
    assert all(row["steps"] >= 1 for row in phases["ablation"]["rows"])
    assert phases["ablation"]["independent"] is not None  # scored on the phantoms phase's cache too
    assert all("independent" in row for row in phases["ablation"]["rows"])
    files = sorted(path.name for path in out.iterdir())
    assert len(files) <= 8 and {"gpu_job.json", "gpu_job.md", "ablation.md"} <= set(files)  # the device tool's limit


def _unet_trained_with(init: str, tmp_path: Path) -> tuple[dict, dict, dict]:
    """The dry run's U-Net phase alone with ``init``: (report, the phase's result, the trained checkpoint's header)."""
    from napari_sff.models import load_checkpoint

    out = tmp_path / "out"
    report = gpu_job.run_job(out, work=tmp_path / "work", dry_run=True, init=init, phases=["simulate", "cache", "unet"])
    trained = report["phases"]["unet"]
    assert trained["status"] == "ok", trained.get("error")
    assert report["init"] == init
    return report, trained, load_checkpoint(out / "unet.safetensors", expected_arch="unet")[1]


def test_init_shipped_fine_tunes_the_shipped_weights_in_their_own_architecture(tmp_path):
    from napari_sff.models import default_weights_path, read_metadata

    _, trained, header = _unet_trained_with("shipped", tmp_path)
    assert trained["init"] == str(default_weights_path("unet"))
    assert trained["training"]["lr"] == gpu_job.PROFILES["dry"]["unet"]["fine_tune_lr"]  # not the scratch lr
    assert header["config"] == read_metadata(default_weights_path("unet"))["config"]  # not the dry run's tiny one
    with pytest.raises(ValueError, match="init must be"):
        gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, init="imagenet", phases=[])


def test_init_widened_fine_tunes_the_shipped_unet_made_twice_as_wide(tmp_path):
    from napari_sff.models import default_weights_path, read_metadata

    _, trained, header = _unet_trained_with("widened", tmp_path)
    assert trained["init"].endswith("unet_widened.safetensors")
    assert trained["training"]["lr"] == gpu_job.PROFILES["dry"]["unet"]["fine_tune_lr"]
    shipped = read_metadata(default_weights_path("unet"))["config"]
    assert header["config"] == {**shipped, "base_channels": 2 * shipped["base_channels"]}
    started = header["metadata"]["initialised_from"]  # the run's start, and that start's own lineage
    assert started["weights"] == "unet_widened.safetensors" and started["widened_from"]["factor"] == 2
    assert started["widened_from"]["sha256"] == hashlib.sha256(default_weights_path("unet").read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="drop --init widened"):
        gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, init="widened",
                        unet_config={"base_channels": 8}, phases=[])


def test_a_failing_phase_is_recorded_and_the_next_one_runs(tmp_path):
    report = gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, phases=["cache", "environment"])
    assert report["phases"]["cache"]["status"] == "error"
    assert "no such folder" in report["phases"]["cache"]["error"]  # nothing simulated into work/data
    assert report["phases"]["environment"]["status"] == "ok"


def test_a_phase_over_its_budget_is_killed_and_recorded(tmp_path, monkeypatch):
    def hang(ctx, plan):
        time.sleep(60)
        return {}

    monkeypatch.setitem(gpu_job.PHASE_FUNCTIONS, "environment", hang)  # the forked child inherits it
    monkeypatch.setitem(gpu_job.PROFILES["dry"], "environment", {"budget_s": 3})
    monkeypatch.setitem(gpu_job.PROFILES["dry"], "grace_s", 1)
    started = time.perf_counter()
    report = gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, phases=["environment"])
    assert time.perf_counter() - started < 30
    assert report["phases"]["environment"]["status"] == "killed"
    assert "over its budget of 3 s" in report["phases"]["environment"]["error"]


def test_a_phase_with_leave_s_gives_way_to_the_phases_after_it(tmp_path, monkeypatch):
    """The benchmark's ``leave_s``: when the job runs late, it is shortened (or skipped) so that the ablation keeps
    its time; its budget is recorded with its result."""
    monkeypatch.setitem(gpu_job.PHASE_FUNCTIONS, "environment", lambda ctx, plan: {"given_s": plan["budget_s"]})
    monkeypatch.setitem(gpu_job.PROFILES["dry"], "environment", {"budget_s": 20, "leave_s": 8})
    report = gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, total_s=15,
                             phases=["environment"])
    phase = report["phases"]["environment"]
    # 15 s in all, 8 kept: at most 7 (less the job's own start-up, imports included when they are not cached).
    assert phase["status"] == "ok" and 3 < phase["given_s"] <= 7 and phase["budget_s"] == round(phase["given_s"], 1)
    monkeypatch.setitem(gpu_job.PROFILES["dry"], "environment", {"budget_s": 20, "leave_s": 14})
    report = gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, total_s=15,
                             phases=["environment"])
    assert report["phases"]["environment"]["status"] == "skipped"
    assert re.fullmatch(r"skipped: 1[0-5] s left, 14 s of them kept for the phases after it",
                        report["phases"]["environment"]["error"])
    assert gpu_job.PROFILES["gpu"]["benchmark"]["leave_s"] >= 2 * (
        gpu_job.PROFILES["gpu"]["ablation"]["min_config_s"] + gpu_job.PROFILES["gpu"]["ablation"]["overhead_s"])


def test_a_killed_phase_keeps_the_progress_it_saved(tmp_path, monkeypatch):
    """A phase that measures in turn (the benchmark) saves each result; a kill at its budget keeps them."""
    def measure_then_hang(ctx, plan):
        gpu_job.save_progress(ctx, {"best": {}, "rows": [{"variant": "first", "ms_per_slice": 1.5}]})
        time.sleep(60)
        return {"rows": ["never"]}

    monkeypatch.setitem(gpu_job.PHASE_FUNCTIONS, "environment", measure_then_hang)  # the forked child inherits it
    monkeypatch.setitem(gpu_job.PROFILES["dry"], "environment", {"budget_s": 3})
    monkeypatch.setitem(gpu_job.PROFILES["dry"], "grace_s", 1)
    report = gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, phases=["environment"])
    killed = report["phases"]["environment"]
    assert killed["status"] == "killed" and "over its budget of 3 s" in killed["error"]
    assert killed["rows"] == [{"variant": "first", "ms_per_slice": 1.5}]
    saved = json.loads((tmp_path / "out" / "gpu_job.json").read_text())["phases"]["environment"]
    assert saved["rows"] == killed["rows"]
    # A later run of the same phase does not inherit it: the progress file goes before the phase starts.
    monkeypatch.setitem(gpu_job.PHASE_FUNCTIONS, "environment", lambda ctx, plan: {"rows": []})
    again = gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, phases=["environment"])
    assert again["phases"]["environment"] == {**again["phases"]["environment"], "status": "ok", "rows": []}


def test_the_markdown_says_what_a_killed_benchmark_measured_before():
    best = {"unet": {"variant": "bfloat16 eager", "batch": 64, "ms_per_slice": 0.4, "target_ms_per_slice": 0.25}}
    summary = gpu_job.markdown({"profile": "gpu", "started": "now", "phases": {
        "benchmark": {"status": "killed", "error": "killed after 80 s", "best": best},
        "ablation": {"status": "killed", "error": "killed after 9 s"}}})
    assert "| benchmark | killed | 0.0 | killed after 80 s; measured before: unet bfloat16 eager batch 64: " \
           "0.400 ms/slice (target 0.25) |" in summary
    assert "| ablation | killed | 0.0 | killed after 9 s |" in summary


def test_the_benchmark_runs_compiles_last_and_begins_none_it_cannot_finish(tmp_path, monkeypatch):
    """Variants run in the order given (the phase puts those without a compiler first); a compile is begun only
    with 1.25 x the longest compile so far (+2 s), and at least 20 s, left; each row is saved as it is measured."""
    from training.gpu_job import benchmark

    now = {"t": 0.0}
    progress = tmp_path / "progress.json"
    ctx = {"started": time.time(), "progress_path": str(progress)}
    saved = []

    def variant(network, label, build_s, compiles=False, fails=False):
        def build():
            now["t"] += build_s  # the fake clock: building (compiling) takes build_s
            if fails:
                raise RuntimeError("no CUDA")
            return lambda: None
        return benchmark.Variant(network, label, build, 4, {"batch": 4}, compiles=compiles)

    variants = [variant("unet", "eager", 0.1), variant("unet", "graph", 0.1, fails=True),
                variant("ddpm", "eager", 1.0), variant("unet", "compile a", 20.0, compiles=True),
                variant("ddpm", "compile", 40.0, compiles=True), variant("unet", "compile b", 1.0, compiles=True),
                variant("unet", "late", 0.0)]
    result = {"size": 256, "device": "cuda:0", "unet": [], "ddpm": []}
    original = benchmark.save_progress
    monkeypatch.setattr(benchmark, "save_progress",
                        lambda ctx, r: (original(ctx, r), saved.append(len(r["unet"]) + len(r["ddpm"]))))
    benchmark.run_variants(variants, result, {"unet": 1, "ddpm": 1}, deadline=45.0, ctx=ctx, clock=lambda: now["t"])
    unet = {row["variant"]: row for row in result["unet"]}
    assert [row["variant"] for row in result["unet"]] == ["eager", "graph", "compile a", "compile b", "late"]
    assert unet["eager"]["ms_per_slice"] >= 0 and unet["eager"]["first_call_s"] == pytest.approx(0.1)
    assert unet["compile a"]["first_call_s"] == pytest.approx(20.0)
    assert unet["graph"]["error"] == "RuntimeError: no CUDA"
    assert "ms_per_slice" in unet["compile a"]  # begun at t = 1.2 with no compile before it to go by
    # The DDPM's compile (at t = 21.2, 23.8 s left) would need 1.25 x 20 + 2 = 27 s: not begun, and said why;
    # nor the U-Net's second (same rule); a plain variant still runs in the time left.
    ddpm_compile = result["ddpm"][1]
    assert ddpm_compile["variant"] == "compile" and "ms_per_slice" not in ddpm_compile
    assert ddpm_compile["error"] == "skipped: 24 s of the budget were left, under the 27 s a compile needs after " \
                                    "one of 20 s"
    assert unet["compile b"]["error"].startswith("skipped: 24 s of the budget were left")
    assert "ms_per_slice" in unet["late"]
    assert saved == list(range(1, len(variants) + 1))  # saved after every row
    assert json.loads(progress.read_text())["unet"][-1]["variant"] == "late"
    assert result["best"]["unet"]["variant"] in ("eager", "compile a", "late")
    # The first compile has nothing to go by: with under 20 s left it is not begun either.
    late = {"unet": [], "ddpm": []}
    benchmark.run_variants([variant("unet", "compile", 1.0, compiles=True)], late, {"unet": 1, "ddpm": 1},
                           deadline=now["t"] + 15.0, ctx=ctx, clock=lambda: now["t"])
    assert late["unet"][0]["error"] == "skipped: 15 s of the budget were left, under the 20 s a compile needs at least"


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    from napari_sff.sample_data import write_cases
    from training.data import build_slice_cache

    folder = tmp_path_factory.mktemp("ablation")
    write_cases(folder / "cases", 6, seed=3, size=32, n_slices=3)
    return build_slice_cache(folder / "cases", folder / "cache", size=32)


def test_ablation_trains_each_config_for_the_same_budget_and_scores_it(tiny_cache, tmp_path):
    train = {"batch_size": 2, "crop": 16, "workers": 0, "steps_per_epoch": 25, "val_slices": 1, "val_ddim_steps": 1,
             "amp": False}
    out = tmp_path / "ablation"
    ddpm_ablation.main(["--data", str(tiny_cache), "--out", str(out), "--budget-s", "1.5", "--configs",
                        "eps-cosine,unet", "--train", json.dumps(train), "--ddpm-config",
                        json.dumps(TINY_CONFIGS["ddpm"]), "--unet-config", json.dumps(TINY_CONFIGS["unet"]),
                        "--max-images", "2", "--ddim-steps", "2", "--device", "cpu", "--batch-size", "2",
                        "--independent", str(tiny_cache)])
    report = json.loads((out / "ablation.json").read_text())
    ddpm, unet = report["rows"]
    assert ddpm["config"] == "eps-cosine" and unet["config"] == "unet"
    assert ddpm["prediction_type"] == "epsilon" and ddpm["beta_schedule"] == "cosine" and ddpm["T"] == 1000
    assert ddpm["ema"] == 0.999 and ddpm["ema_warmup"] and unet["ema"] is None
    for row in (ddpm, unet):
        assert "error" not in row, row.get("error")
        assert row["stopped_by"] == "time budget" and row["train_step_seconds"] >= 1.5 and row["steps"] >= 1
        assert row["images"] == 2 and row["ms_per_image"] > 0 and row["mae"] >= 0
    table = (out / "ablation.md").read_text()
    assert "| eps-cosine | epsilon | cosine | 1000 | 0.999 (warm-up) |" in table
    assert "| unet | n/a (regression) |" in table
    # The second held-out set (here the cache's own test split): scored per run, paired against the first run.
    assert report["independent"]["images"] == 2 and ddpm["independent"]["mae"] >= 0
    assert unet["paired_p_vs"] == "eps-cosine" and 0 <= unet["paired_p"] <= 1
    assert 0 <= unet["independent"]["paired_p"] <= 1 and "paired_p" not in ddpm["independent"]
    assert "The same weights on an independent held-out set" in table and "paired p vs eps-cosine" in table


def test_the_loader_benchmark_reports_slices_per_second_per_worker_count(tiny_cache, tmp_path):
    """benchmarks/bench_loader.py, which sizes the GPU job's loader (training/GPU.md), on the tiny cache."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "loader.json"
    subprocess.run([sys.executable, str(root / "benchmarks" / "bench_loader.py"), "--cache", str(tiny_cache),
                    "--workers", "0", "1", "--batch", "2", "--batches", "2", "--repeats", "2", "--out", str(out)],
                   check=True, capture_output=True, cwd=root)
    report = json.loads(out.read_text())
    info = json.loads((Path(tiny_cache) / "cache.json").read_text())
    assert report["train_slices"] == info["splits"]["train"]["slices"] and report["one_slice_ms"] > 0
    assert [row["workers"] for row in report["loaders"]] == [0, 1]
    assert all(row["slices_per_s"] > 0 and row["first_batch_s"] > 0 for row in report["loaders"])


def test_ablation_refuses_an_unknown_config(tiny_cache, tmp_path):
    with pytest.raises(ValueError, match="unknown configuration.*x-linear"):
        ddpm_ablation.run_ablation(str(tiny_cache), tmp_path, 1.0, ["x-linear"])


def test_unet_config_trains_another_architecture_from_scratch(tmp_path):
    from napari_sff.models import load_checkpoint

    out = tmp_path / "out"
    wider = {"base_channels": 6, "depth": 2}  # not the dry run's tiny 4 / 3
    report = gpu_job.run_job(out, work=tmp_path / "work", dry_run=True, unet_config=wider,
                             phases=["simulate", "cache", "unet"])
    trained = report["phases"]["unet"]
    assert trained["status"] == "ok", trained.get("error")
    assert report["unet_config"] == wider and trained["init"] == "scratch"
    _, header = load_checkpoint(out / "unet.safetensors", expected_arch="unet")
    assert {key: header["config"][key] for key in wider} == wider
    # The size check's estimate is the file's tensors exactly: the file is 8 bytes of header length (safetensors'
    # format), the JSON header and the tensors; the header (a training card) fits the check's 3 % margin.
    weights = out / "unet.safetensors"
    header_bytes = int.from_bytes(weights.read_bytes()[:8], "little")
    assert weights.stat().st_size - 8 - header_bytes == runner.unet_weights_bytes(wider, "float16")
    assert header_bytes < 0.03 * gpu_job.RETURN_LIMITS["file_bytes"]
    with pytest.raises(ValueError, match="cannot fine-tune the shipped"):
        gpu_job.run_job(out, work=tmp_path / "work", dry_run=True, init="shipped", unet_config=wider, phases=[])


def test_a_unet_whose_weights_would_not_come_back_is_refused_before_any_work(tmp_path, capsys):
    """The device tool brings back files of at most 16 MiB: 32 / 6 (31 M parameters, ~59 MiB in float16) would
    train for minutes and leave its weights behind; 32 / 5, which training/GPU.md suggests (~15 MiB), runs."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        gpu_job.main(["--out", str(out), "--dry-run", "--unet-config", '{"base_channels": 32, "depth": 6}'])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "59." in error and "16 MiB" in error and "smaller width or depth" in error
    assert not out.exists()
    runner.check_options(unet_config={"base_channels": 32, "depth": 5})


def test_the_report_says_what_the_device_tool_would_leave_behind(tmp_path):
    limits = gpu_job.RETURN_LIMITS
    assert runner.not_returnable(tmp_path) == []
    for i in range(limits["files"]):
        (tmp_path / f"f{i}.txt").write_text("x")
    assert runner.not_returnable(tmp_path) == []
    assert runner.not_returnable(tmp_path, extra=["gpu_job.md"]) == [f"{limits['files'] + 1} files, over 8"]
    with open(tmp_path / "f0.txt", "wb") as big:  # sparse: 17 MiB on paper, nothing on disk
        big.truncate(17 * 2**20)
    (tmp_path / "f1.txt").rename(tmp_path / "f 1.txt")
    assert runner.not_returnable(tmp_path) == [
        "f0.txt: 17.0 MiB, over 16 MiB", "f 1.txt: a name with other characters than letters, digits, '.', '_' and '-'"]
    summary = gpu_job.markdown({"profile": "gpu", "started": "now", "phases": {}, "not_returnable": ["f0.txt: big"]})
    assert "would not bring back:** f0.txt: big" in summary


def test_muscle_prior_reaches_the_simulated_cases(tmp_path):
    import numpy as np

    from napari_sff import io
    from napari_sff.simulate import simulate_cases

    report = gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, domain="randomized",
                             muscle_prior="population", phases=["simulate"])
    simulated = report["phases"]["simulate"]
    assert simulated["status"] == "ok", simulated.get("error")
    assert report["muscle_prior"] == simulated["muscle_prior"] == "population"
    # Block 0's first case is simulate_cases' first case of the block's seed: with the population prior.
    block_seed = int(np.random.SeedSequence([gpu_job.PROFILES["dry"]["simulate"]["seed"], 0]).generate_state(1)[0])
    written = io.read_nifti(next(Path(simulated["folder"]).glob("b0000c0_*_sff.nii"))).array

    def first_case(prior):
        case = next(simulate_cases(1, seed=block_seed, size=simulated["size"], n_slices=simulated["slices_per_case"],
                                   domain="randomized", muscle_prior=prior))
        return io.Volume.from_array(case.sff, case.spacing).array

    np.testing.assert_allclose(written, first_case("population"), atol=1e-6)
    assert not np.allclose(written, first_case("simulator"), atol=1e-6)
    with pytest.raises(ValueError, match="unknown muscle prior"):
        gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, muscle_prior="lean", phases=[])


def test_anatomies_reach_the_simulated_cases(tmp_path):
    report = gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, domain="randomized",
                             anatomies=("pelvis", "calf"), phases=["simulate"])
    simulated = report["phases"]["simulate"]
    assert simulated["status"] == "ok", simulated.get("error")
    assert report["anatomies"] == simulated["anatomies"] == ["pelvis", "calf"]
    written = {path.name.split("_")[1] for path in Path(simulated["folder"]).glob("*_sff.nii")}
    assert written == {"pelvis", "calf"}
    assert "pelvis, calf" in gpu_job.markdown(report)
    with pytest.raises(ValueError, match="unknown anatomy 'knee'"):
        gpu_job.run_job(tmp_path / "out", work=tmp_path / "work", dry_run=True, anatomies=("knee",), phases=[])
