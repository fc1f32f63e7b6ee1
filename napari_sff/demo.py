"""``python -m napari_sff.demo``: napari with the synthetic sample and napari-sff's widgets docked.

``make demo`` runs this. ``--screenshot FILE`` saves the window and exits (used for the README figures and
for checking the demo headless); ``--predict`` runs the U-Net on the sample first.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

DEMO_WIDGETS: tuple[str, ...] = ("Predict SFF", "ROI statistics")


def build_demo(viewer, sample: str = "thigh") -> list:
    """Open the sample in ``viewer`` and dock the plugin's widgets; returns the docked widgets."""
    viewer.open_sample("napari-sff", sample)
    docked = []
    for widget_name in DEMO_WIDGETS:
        _, widget = viewer.window.add_plugin_dock_widget("napari-sff", widget_name)
        docked.append(widget)
    return docked


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_sff.demo", description=__doc__)
    parser.add_argument("--sample", default="thigh", choices=("thigh", "calf", "abdomen"))
    parser.add_argument("--screenshot", help="save a screenshot of the window to this PNG and exit")
    args = parser.parse_args(argv)

    import torch  # noqa: F401  (torch before Qt: the other order can clash over shared native libraries)

    # isort: split
    import napari

    viewer = napari.Viewer(title="napari-sff demo")
    build_demo(viewer, args.sample)
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
