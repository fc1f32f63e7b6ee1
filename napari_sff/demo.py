"""``python -m napari_sff.demo``: napari with the synthetic sample and napari-sff's widgets docked.

``make demo`` runs this. ``--screenshot FILE`` saves the window and exits (used for the README figures and
for checking the demo headless). ``--predict`` runs the shipped U-Net on the viewed slice first (the overlay
reading view); ``--compare`` runs U-Net and DDPM there and opens the side-by-side comparison grid.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

DEMO_WIDGETS: tuple[str, ...] = ("Predict SFF", "ROI statistics")
ZOOM = 2.0


def select_maps(roi_widget, predict) -> None:
    """The ROI table and plots compare the new maps with the ground truth, on the slice that was predicted."""
    names = [predict.ground_truth.value] + [predict._map("sff", arch) for arch in ("unet", "ddpm")]
    roi_widget.values.value = [layer for layer in names if layer is not None]
    roi_widget.scope.value = predict.scope.value  # the maps hold the viewed slice only
    roi_widget.refresh()
    wait_until(lambda: not roi_widget.busy)


def wait_until(condition, seconds: float = 120.0) -> bool:
    """Let Qt run (workers report back, the canvas draws) until ``condition()`` or the time is up."""
    import time

    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()
    return bool(condition())


def build_demo(viewer, sample: str = "thigh") -> list:
    """Open the sample in ``viewer`` and dock the plugin's widgets; returns the docked widgets."""
    viewer.open_sample("napari-sff", sample)
    docked = []
    for widget_name in DEMO_WIDGETS:
        _, widget = viewer.window.add_plugin_dock_widget("napari-sff", widget_name)
        docked.append(widget)
    return docked


def run_and_wait(viewer, predict, model: str, side_by_side: bool, ddim_steps: int = 50) -> None:
    """Predict the middle slice with the shipped weights, wait for it (events keep flowing), then put the cursor
    readout on a voxel of muscle so a screenshot shows every map's value."""
    import numpy as np
    from qtpy.QtCore import QEventLoop
    from qtpy.QtWidgets import QApplication

    source = predict.image.value
    viewer.dims.set_current_step(0, source.data.shape[0] // 2)
    predict.model.value = model
    predict.scope.value = "Current slice"
    predict.side_by_side.value = side_by_side
    predict.ddim_steps.value = ddim_steps
    worker = predict.run()
    if worker is None:
        return
    loop = QEventLoop()
    worker.finished.connect(loop.quit)
    if predict._worker is not None:
        loop.exec()
    wait_until(lambda: not predict.arranging, seconds=60.0)  # the comparison grid is set up a step per turn
    QApplication.processEvents()  # let the canvas take its size before fitting the view to it
    viewer.reset_view()
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari 0.9 moved it
    camera.zoom *= ZOOM  # the sample's body fills a third of its field of view
    labels = next((layer for layer in viewer.layers if type(layer).__name__ == "Labels"), None)
    if labels is not None:  # a voxel of the first muscle on this slice
        index = source.data.shape[0] // 2
        voxels = np.argwhere(np.asarray(labels.data[index]) == 1)
        if len(voxels):
            viewer.cursor.position = labels.data_to_world((index, *voxels[len(voxels) // 2]))
            predict._on_mouse_move(viewer, None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_sff.demo", description=__doc__)
    parser.add_argument("--sample", default="thigh", choices=("thigh", "calf", "abdomen"))
    parser.add_argument("--screenshot", help="save a screenshot of the window to this PNG and exit")
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--predict", action="store_true", help="run the shipped U-Net on the viewed slice first")
    run.add_argument("--compare", action="store_true",
                     help="run U-Net and DDPM on the viewed slice and show them side by side with the ground truth")
    parser.add_argument("--ddim-steps", type=int, default=50, help="DDIM steps of the DDPM for --compare")
    parser.add_argument("--size", default="1900x1100", help="window size WIDTHxHEIGHT in pixels (default 1900x1100)")
    args = parser.parse_args(argv)

    import torch  # noqa: F401  (torch before Qt: the other order can clash over shared native libraries)

    # isort: split
    import napari

    viewer = napari.Viewer(title="napari-sff demo")
    viewer.window.resize(*(int(n) for n in args.size.lower().split("x")))
    predict, roi_widget = build_demo(viewer, args.sample)
    if args.predict or args.compare:
        run_and_wait(viewer, predict, "Both (compare)" if args.compare else "U-Net", side_by_side=args.compare,
                     ddim_steps=args.ddim_steps)
        select_maps(roi_widget, predict)
    if args.screenshot:
        wait_until(lambda: False, seconds=1.0)  # let Qt lay out the docked widgets before the window is captured
        viewer.screenshot(args.screenshot, canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
