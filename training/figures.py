"""Regenerate the README's figures.

    python -m training.figures simulator            # docs/simulated_pairs.png (no GUI needed)
    xvfb-run -a python -m training.figures screenshots   # docs/predict_widget.png, docs/roi_widget.png

The screenshots drive the real widgets with the shipped weights on the thigh sample, exactly as a user would.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[1] / "docs"


def simulator_figure(out: Path, seed: int = 11) -> Path:
    """T2w, ground-truth SFF and muscle labels for one mid slice of each anatomy (the pelvis last)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_sff.simulate import ANATOMIES, EXTRA_ANATOMIES, simulate_case

    anatomies = (*ANATOMIES, *EXTRA_ANATOMIES)
    fig, axes = plt.subplots(3, len(anatomies), figsize=(4 * len(anatomies), 12), facecolor="black")
    for column, anatomy in enumerate(anatomies):
        case = simulate_case(anatomy, seed=seed + column, size=256, n_slices=24)
        k = case.t2w.shape[0] // 2
        t2w = case.t2w[k]
        axes[0, column].imshow(t2w, cmap="gray", vmax=np.percentile(t2w, 99.5))
        image = axes[1, column].imshow(case.sff[k], cmap="inferno", vmin=0, vmax=1)
        axes[2, column].imshow(t2w, cmap="gray", vmax=np.percentile(t2w, 99.5))
        labels = np.ma.masked_equal(case.labels[k], 0)
        axes[2, column].imshow(labels, cmap="tab10", alpha=0.6, interpolation="nearest")
        condition = case.params.get("condition", "")
        axes[0, column].set_title(f"{anatomy} ({condition}), T2w", color="white")
        axes[1, column].set_title("ground-truth SFF", color="white")
        axes[2, column].set_title("muscle labels", color="white")
    for ax in axes.flat:
        ax.axis("off")
    colorbar = fig.colorbar(image, ax=axes[1, :].tolist(), fraction=0.02)
    colorbar.ax.yaxis.set_tick_params(color="white", labelcolor="white")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70, facecolor="black", bbox_inches="tight")
    plt.close(fig)
    return out


def _save(figure, path: Path) -> Path:
    from napari_sff.io import atomic_write

    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path


def evaluation_figures(report: dict, examples: dict[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """PNG figures of an evaluation report: the DDIM-steps and samples ablation, the Bland-Altman plot of ROI
    means and example panels (T2w, truth, each model, its |error|) of the first test images."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from napari_sff.stats import bland_altman

    out_dir = Path(out_dir)
    written = []
    ablation, samples = report.get("ddim_ablation") or [], report.get("samples_ablation") or []
    if ablation or samples:
        figure = Figure(figsize=(11, 3.4), layout="constrained")
        mae_ax, time_ax, samples_ax = figure.subplots(1, 3)
        if ablation:
            steps = [row["ddim_steps"] for row in ablation]
            mae_ax.errorbar(steps, [row["mae"] for row in ablation], yerr=[row["mae_sd"] for row in ablation],
                            marker="o", capsize=3)
            time_ax.plot(steps, [row["ms_per_image"] for row in ablation], marker="o")
            for ax in (mae_ax, time_ax):
                ax.set_xscale("log")
                ax.set_xlabel("DDIM steps")
        unet = report["models"].get("unet")
        if unet:
            mae_ax.axhline(unet["mae"], color="C1", linestyle="--", label="U-Net")
            time_ax.axhline(unet["ms_per_image"], color="C1", linestyle="--", label="U-Net")
            mae_ax.legend(loc="upper right", fontsize=8)
        identity = report["models"].get("identity")
        if identity:
            mae_ax.axhline(identity["mae"], color="C2", linestyle=":", label="identity")
            mae_ax.legend(loc="upper right", fontsize=8)
        mae_ax.set(ylabel="MAE over images (body)", title="DDPM: DDIM steps")
        time_ax.set(ylabel="ms per image", title=f"time ({report['gpu'] or report['device']})")
        if samples:
            counts = [row["samples"] for row in samples]
            samples_ax.errorbar(counts, [row["mae"] for row in samples], yerr=[row["mae_sd"] for row in samples],
                                marker="o", capsize=3)
            samples_ax.set(xlabel="samples averaged", ylabel="MAE over images (body)",
                           title=f"DDPM: samples at {samples[0]['ddim_steps']} steps", xticks=counts)
        else:
            samples_ax.set_axis_off()
        written.append(_save(figure, out_dir / "ddim_ablation.png"))
    means = (report.get("rois") or {}).get("means")
    if means and means.get("truth"):
        models = [name for name in ("identity", "unet", "ddpm") if name in means]
        figure = Figure(figsize=(3.8 * len(models), 3.4), layout="constrained")
        truth = 100 * np.asarray(means["truth"])
        for ax, name in zip(np.atleast_1d(figure.subplots(1, len(models))), models, strict=True):
            values = 100 * np.asarray(means[name])
            ax.scatter((values + truth) / 2, values - truth, s=12)
            agreement = bland_altman(values, truth)
            for value, style in ((agreement["bias"], "-"), (agreement["loa_low"], "--"),
                                 (agreement["loa_high"], "--")):
                ax.axhline(value, color="k", linestyle=style, linewidth=0.8)
            ax.set(title=f"{name}: bias {agreement['bias']:+.1f} pp", xlabel="mean of model and truth [%]",
                   ylabel="model − truth [pp]")
        written.append(_save(figure, out_dir / "bland_altman.png"))
    models = [name for name in ("unet", "ddpm") if name in examples]
    if "truth" in examples and len(examples["truth"]):
        n = min(len(examples["truth"]), *(len(examples[name]) for name in models)) if models else 0
        columns = ["t2w", "truth", *models, *(f"|{name} − truth|" for name in models)]
        figure = Figure(figsize=(2.4 * len(columns), 2.5 * max(1, n)), layout="constrained")
        axes = np.atleast_2d(figure.subplots(max(1, n), len(columns), squeeze=False))
        for row in range(n):
            truth = examples["truth"][row]
            images = {"t2w": examples["t2w"][row], "truth": truth,
                      **{name: examples[name][row] for name in models},
                      **{f"|{name} − truth|": np.abs(examples[name][row] - truth) for name in models}}
            for ax, column in zip(axes[row], columns, strict=True):
                image = images[column]
                if column == "t2w":
                    ax.imshow(image, cmap="gray", vmax=np.percentile(image, 99.5))
                elif column.startswith("|"):
                    ax.imshow(image, cmap="magma", vmin=0, vmax=0.3)
                else:
                    ax.imshow(image, cmap="inferno", vmin=0, vmax=1)
                ax.set_axis_off()
                if row == 0:
                    ax.set_title(column, fontsize=9)
        written.append(_save(figure, out_dir / "examples.png"))
    return written


def _wait(condition: Callable[[], bool], timeout: float = 600.0) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not condition():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() > deadline:
            raise TimeoutError("widget did not finish in time")


def _settle(seconds: float = 0.5) -> None:
    """Let Qt lay out what just changed (labels resize after their text is set) before a screenshot."""
    end = time.monotonic() + seconds
    _wait(lambda: time.monotonic() > end)


def screenshots(out_dir: Path) -> list[Path]:
    """Predict with the shipped U-Net on the thigh sample, then show ROI statistics; save both windows."""
    import napari

    from napari_sff.demo import build_demo

    viewer = napari.Viewer(title="napari-sff")
    viewer.window._qt_window.resize(1600, 1000)
    predict, roi = build_demo(viewer, "thigh")
    viewer.dims.set_current_step(0, 12)
    predict.device.value = "cpu"
    worker = predict.run()
    _wait(lambda: worker is None or predict._worker is None)
    viewer.layers["synthetic_thigh_labels"].visible = False
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "predict_widget.png", out_dir / "roi_widget.png"]
    _settle()
    viewer.screenshot(str(paths[0]), canvas_only=False)
    viewer.layers["synthetic_thigh_labels"].visible = True
    roi.refresh()
    _wait(lambda: bool(roi.rows) and not roi.busy)
    _settle()
    _wait(lambda: not roi.busy)
    print("ROI maps:", [layer.name for layer in roi.values.value], "rows:", len(roi.rows))
    viewer.screenshot(str(paths[1]), canvas_only=False)
    viewer.close()
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("simulator", "screenshots"))
    parser.add_argument("--out", default=str(DOCS))
    args = parser.parse_args(argv)
    if args.what == "simulator":
        print(simulator_figure(Path(args.out) / "simulated_pairs.png"))
    else:
        for path in screenshots(Path(args.out)):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
