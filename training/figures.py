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
    """T2w, ground-truth SFF and muscle labels for one mid slice of each anatomy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_sff.simulate import ANATOMIES, simulate_case

    fig, axes = plt.subplots(3, len(ANATOMIES), figsize=(4 * len(ANATOMIES), 12), facecolor="black")
    for column, anatomy in enumerate(ANATOMIES):
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
