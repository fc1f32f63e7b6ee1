"""What the widget tells the user besides layers: warnings (each said once), the device badge and the value of
every map under the cursor.

Its own part because these are read-only views of the run's layers and settings: nothing here changes a layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sff.widgets import _layers

#: The cursor readout: (short name, kind, arch, unit); the ground truth comes first.
READOUT = (("U-Net", "sff", "unet", "%"), ("DDPM", "sff", "ddpm", "%"), ("DDPM − U-Net", "difference", None, "pp"))


def slice_familiarity(layer: Any, world_position: Any) -> tuple[str, str] | None:
    """("U-Net, slice K", "feature distance D (training ≤ T)") for the slice under the cursor of a U-Net map whose
    prediction measured it (napari_sff.domain: about 1 for a training slice); None otherwise."""
    if layer is None:
        return None
    info = layer.metadata.get("napari_sff", {})
    distances, axis = info.get("feature_distance"), info.get("slice_axis")
    if not distances or axis is None:
        return None
    voxel = _layers.voxel_at(layer, world_position)
    if voxel is None or not 0 <= axis < 3:
        return None
    index = voxel[-3:][axis]  # the prediction's 3D volume is the map's last three axes
    distance = distances.get(index)
    if distance is None:
        return None
    threshold = info.get("feature_threshold")
    limit = "" if threshold is None else f" (training ≤ {threshold:.2f}{': unlike' if distance > threshold else ''})"
    return f"U-Net, slice {index}", f"feature distance {distance:.2f}{limit}"


class ReadoutMixin:
    """The widget's messages and readouts. Uses the widget's ``viewer``, ``ground_truth``, ``device_badge``,
    ``readout`` and ``_said``, and the output layers' ``_map``."""

    def _warn_once(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        if message not in self._said:
            self._said.add(message)
            show_warning(message)

    def _badge(self, requested: str, used: str) -> None:
        fallback = requested == "auto" and used == "cpu"
        self.device_badge.value = "CPU (no GPU available: slower)" if fallback else used

    def readout_values(self, world_position: Any) -> list[tuple[str, str]]:
        """(map, value) at a world position for the ground truth, U-Net, DDPM and DDPM - U-Net that exist, visible
        or not: SFF in percent, the difference in percentage points, "–" outside a map."""
        entries = [("GT", self.ground_truth.value, "%")]
        entries += [(title, self._map(kind, arch), unit) for title, kind, arch, unit in READOUT]
        values = []
        for title, layer, unit in entries:
            if layer is None or layer not in self.viewer.layers:
                continue
            value = _layers.percent_at(layer, world_position)  # percent layers, or a fraction map
            text = "–" if value is None or not np.isfinite(value) else \
                f"{value:.1f} %" if unit == "%" else f"{value:+.1f} pp"
            values.append((title, text))
        familiarity = slice_familiarity(self._map("sff", "unet"), world_position)
        if familiarity is not None:
            values.append(familiarity)
        return values

    def _on_mouse_move(self, viewer: Any, event: Any) -> None:
        """Every map's value under the cursor, one per line (napari's status bar shows one layer's)."""
        values = self.readout_values(viewer.cursor.position)
        self.readout.value = "\n".join(f"{title}: {value}" for title, value in values)
        if any(value != "–" for _, value in values):  # napari's status bar shows one layer; help, every map
            viewer.help = " · ".join(f"{title} {value}" for title, value in values)
