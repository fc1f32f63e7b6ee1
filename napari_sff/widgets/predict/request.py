"""Reading the widget's controls into a :class:`~napari_sff.widgets.predict.worker.RunRequest` on the GUI thread:
the settings checked, the T2w volume, the slice on screen, and how the ground truth reaches the prediction's grid.

Its own part because it is the only code that reads the controls for a run; the worker then never touches a
widget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import FileEdit

from napari_sff import io, roi
from napari_sff.widgets import _layers
from napari_sff.widgets._layers import SCOPES, output_name
from napari_sff.widgets.predict.worker import RunRequest

MODEL_CHOICES = {"U-Net": ("unet",), "DDPM": ("ddpm",), "Both (compare)": ("unet", "ddpm")}


class RequestMixin:
    """The widget's run settings. Uses the widget's ``viewer``, its controls (``image``, ``time_point``, ``scope``,
    ``model``, ``ground_truth``, the weights, ``device``, ``ddim_steps``, ``samples``, ``batch_size``,
    ``resample``, ``mirror``, ``precision``) and ``_warn_once``."""

    @staticmethod
    def _weights(edit: FileEdit) -> str | None:
        """The user's checkpoint, or None for the shipped weights.

        An emptied FileEdit reports the working directory as its value, so a folder means "no file chosen".
        """
        text = str(edit.line_edit.value).strip()
        return None if text in ("", ".") or Path(text).is_dir() else text

    def current_slice_index(self, layer: Any) -> tuple[int, int]:
        """(axis, index) of the slice on screen in the layer's 3D data (time dropped; axis 0 in a 3D view)."""
        drop = layer.ndim - 3
        found = _layers.current_slice(self.viewer, layer)
        axis, index = found if found is not None else (drop, int(round(layer.world_to_data(self.viewer.dims.point)[drop])))
        return axis - drop, int(np.clip(index, 0, layer.data.shape[axis] - 1))

    def make_request(self, scope: str | None = None, archs: tuple[str, ...] | None = None) -> RunRequest | None:
        """Validate the settings; on a problem show a notification and return None."""
        from napari.utils.notifications import show_error, show_info

        layer = self.image.value
        if layer is None:
            show_error("napari-sff: no T2w image layer; open a T2w NIfTI or File > Open Sample > napari-sff")
            return None
        if layer.ndim not in (2, 3, 4) or getattr(layer, "rgb", False):
            show_error(f"napari-sff: layer '{layer.name}' is {layer.ndim}D/RGB; choose a 2D, 3D or 4D grayscale image")
            return None
        time_index = self.time_point.value if layer.ndim == 4 else None
        if layer.ndim == 4:
            show_info(f"napari-sff: '{layer.name}' is 4D; predicting volume {time_index} (change it in 'volume')")
        volume = _layers.layer_volume(layer, time_index)
        scope = scope or self.scope.value
        slice_axis, indices = "auto", None
        if scope == SCOPES[1] and volume.array.ndim == 3:
            slice_axis, index = self.current_slice_index(layer)
            indices = [index]
        archs = archs or MODEL_CHOICES[self.model.value]
        truth = self.ground_truth.value
        truth = truth if truth is not None and truth is not layer else None
        existing = {}
        if indices is not None:  # merged into in the worker (a copy of a whole volume takes ~50 ms per map)
            for arch in archs:
                for kind in ("sff", "std"):
                    name = output_name(kind, arch, layer.name)
                    if name in self.viewer.layers:
                        existing[name] = self.viewer.layers[name].data
        return RunRequest(layer=layer, volume=volume, archs=archs, existing=existing,
                          value_scale=io.layer_value_scale(layer.metadata),
                          weights={"unet": self._weights(self.unet_weights), "ddpm": self._weights(self.ddpm_weights)},
                          device=self.device.value, ddim_steps=self.ddim_steps.value, samples=self.samples.value,
                          batch_size=self.batch_size.value or None, slice_axis=slice_axis, slice_indices=indices,
                          ground_truth=truth, resample=self.resample.value, mirror=self.mirror.value,
                          precision=self.precision.value or None,
                          truth_source=None if truth is None else self._truth_plan(truth, layer, volume))

    def _truth_plan(self, truth: Any, layer: Any, volume: io.Volume) -> tuple | None:
        """How the ground truth reaches the prediction's grid (the T2w's spatial grid) by world coordinates, with
        :func:`napari_sff.roi.plan` (the ROI widget's rule); None, after a notification, when it cannot."""
        from napari.layers import Image

        if not isinstance(truth, Image) or truth.rgb or truth.multiscale or truth.ndim != min(layer.ndim, 3):
            self._warn_once(f"napari-sff: ground truth '{truth.name}' is not a {min(layer.ndim, 3)}-D grayscale map "
                            "like the T2w; no |error| layer")
            return None
        ndim = truth.ndim
        how, grid_to_truth, reason = roi.plan(roi.layer_to_world(truth), truth.data.shape,
                                              roi.layer_to_world(layer, ndim), layer.data.shape[-ndim:],
                                              truth.name, layer.name)
        if how == "incompatible":
            self._warn_once(f"napari-sff: ground truth {reason}; no |error| layer")
            return None
        return truth.data, io.layer_value_scale(truth.metadata), how, grid_to_truth  # read in the worker
