"""Helpers shared by the widgets: layer lookup, geometry of a layer, derived layers placed like their source."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from napari_sff import io
from napari_sff.dixon import is_measured_sff
from napari_sff.inference import ARCH_LABELS
from napari_sff.widgets import _shader_parsing

SCOPES = ("Whole volume", "Current slice")


def is_image(layer: Any) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image)


def is_labels(layer: Any) -> bool:
    from napari.layers import Labels

    return isinstance(layer, Labels)


def is_shapes(layer: Any) -> bool:
    from napari.layers import Shapes

    return isinstance(layer, Shapes)


def is_map(layer: Any) -> bool:
    """An image that holds values to measure: not the gray T2w copies under the comparison grid's maps."""
    return is_image(layer) and layer_kind(layer) != "anatomy"


def made_by_us(layer: Any) -> bool:
    """A prediction or a map derived from one (SD, |error|, difference). A fat fraction measured from Dixon
    images is ours too but is data, not a prediction: it counts as a ground truth (:func:`find_ground_truth`)."""
    return "napari_sff" in layer.metadata and not is_measured_sff(layer)


def find_ground_truth(viewer: Any, exclude: Any = None) -> Any:
    """A layer that looks like a measured SFF map: a Dixon SFF first, else a name with sff/fat, never a prediction."""
    candidates = [layer for layer in viewer.layers
                  if is_image(layer) and layer is not exclude and not made_by_us(layer)]
    measured = [layer for layer in candidates if is_measured_sff(layer)]
    named = [layer for layer in candidates if io.SFF_NAME_PATTERN.search(layer.name)]
    return (measured or named or [None])[0]


def spatial_placement(layer: Any, drop_leading: int = 0) -> dict[str, Any]:
    """The layer's scale/translate/rotate/shear/affine, without ``drop_leading`` leading (e.g. time) axes."""
    keep = slice(drop_leading, None)
    placement = {
        "scale": tuple(np.asarray(layer.scale)[keep]),
        "translate": tuple(np.asarray(layer.translate)[keep]),
        "rotate": np.asarray(layer.rotate)[keep, keep],
        "affine": np.asarray(layer.affine.affine_matrix)[drop_leading:, drop_leading:],
    }
    if drop_leading == 0:  # shear of a 4D series is not carried to its 3D children (scanners do not shear)
        placement["shear"] = np.asarray(layer.shear)
    return placement


def layer_volume(layer: Any, time_index: int | None = None) -> io.Volume:
    """The layer's array as a :class:`io.Volume` (3D; one time point of a 4D layer) with its NIfTI geometry."""
    data = layer.data if io.is_lazy(layer.data) else np.asarray(layer.data)  # lazy: read in the worker
    meta = {"metadata": layer.metadata, "scale": layer.scale, "translate": layer.translate,
            "rotate": layer.rotate}
    volume = io.volume_from_layer(data, meta)
    if data.ndim == 4:
        index = 0 if time_index is None else int(time_index)
        volume = io.Volume(data[index], volume.affine, volume.source)
    return volume


def upsert_image(viewer: Any, name: str, data: np.ndarray, source: Any, *, metadata: dict,
                 inserting: AbstractContextManager | None = None, **kwargs: Any) -> Any:
    """Update the layer called ``name`` in place (re-runs do not pile up copies) or add it like ``source``,
    inside ``inserting`` if given (:meth:`napari_sff.widgets._insertion.DeferredControls.inserting`: not
    selected, its controls built later)."""
    drop = source.ndim - data.ndim
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.data.shape == data.shape:
            layer.data = data
            layer.metadata.update(metadata)
            for key in ("contrast_limits",):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            return layer
        viewer.layers.remove(layer)
    with inserting if inserting is not None else nullcontext():
        return viewer.add_image(data, name=name, metadata=metadata, **spatial_placement(source, drop), **kwargs)


def voxel_at(layer: Any, world_position: Any) -> tuple[int, ...] | None:
    """The layer's nearest voxel index at a world position; None outside the data."""
    index = np.round(np.asarray(layer.world_to_data(world_position))[-layer.ndim:]).astype(int)
    if np.any(index < 0) or np.any(index >= np.asarray(layer.data.shape)):
        return None
    return tuple(int(i) for i in index)


def value_at(layer: Any, world_position: Any) -> float | None:
    """The layer's voxel value at a world position (nearest voxel), visible or not; None outside the data."""
    index = voxel_at(layer, world_position)
    return None if index is None else float(np.asarray(layer.data[index]))  # one voxel: a lazy layer reads one slice


def is_percent(layer: Any) -> bool:
    """A fat-fraction layer that holds percent (napari-sff's SFF, SD, |error| and difference layers)."""
    return io.layer_value_scale(layer.metadata) == io.SFF_LAYER_PERCENT


def fraction_data(layer: Any, *, defer: bool = False) -> Any:
    """The layer's values as fat fractions (percent layers / 100; others as they are), for every consumer
    that computes on fractions (statistics, |error|, writers, reports). A lazy (dask) layer stays lazy;
    ``defer=True`` makes a numpy one lazy too, so the division runs in the widget's worker, not the GUI thread."""
    return io.layer_fraction(layer.data, layer.metadata, defer=defer)


def percent_at(layer: Any, world_position: Any) -> float | None:
    """:func:`value_at` in percent: a percent layer's value as it is (never x 100 twice), a fraction's x 100."""
    value = value_at(layer, world_position)
    return None if value is None else value * (io.SFF_LAYER_PERCENT / io.layer_value_scale(layer.metadata))


def current_slice(viewer: Any, layer: Any) -> tuple[int, int] | None:
    """(data axis, index) of the slice on screen in ``layer``; None in a 3D view. The index may be off the grid."""
    offset = viewer.dims.ndim - layer.ndim
    axes = [axis - offset for axis in viewer.dims.not_displayed if axis >= offset]
    if not axes:
        return None
    axis = axes[-1]
    return axis, int(np.floor(layer.world_to_data(viewer.dims.point)[axis] + 0.5))


#: Labels read from files (io.layer_data kind "labels") are drawn as outlines this many voxels wide, so the
#: muscles stay visible without tinting the fat-fraction overlay.
LABEL_CONTOUR = 1
#: Kinds (``metadata["napari_sff"]["kind"]`` or io's ``metadata[io.LAYER_KIND_KEY]``) shown with a colour bar.
COLORBAR_KINDS = ("sff", "dixon_sff", "std", "error", "difference")
#: Colour bar (width, height) in screen pixels: small enough for a cell of the comparison grid.
COLORBAR_SIZE = (12, 110)


def layer_kind(layer: Any) -> str | None:
    """What a layer holds for napari-sff: "sff", "labels", "image" (read by io), a prediction's kind ("sff",
    "std", "error", "difference"), "anatomy" (a comparison cell's T2w), "dixon_sff"; None if unknown."""
    info = layer.metadata.get("napari_sff") or {}
    return info.get("kind") or layer.metadata.get(io.LAYER_KIND_KEY)


def is_predicted_sff(layer: Any) -> bool:
    """A predicted SFF map: not its SD, |error| or difference, nor a measured (Dixon) map. Layers that carry a
    model but no kind (made before kinds were recorded) count when named as the Predict widget names its map."""
    info = layer.metadata.get("napari_sff") or {}
    if not (is_image(layer) and info.get("model")):
        return False
    if "kind" in info:
        return info["kind"] == "sff"
    source = info.get("source_layer")
    return source is None or layer.name == output_name("sff", info["model"], source)


def style_layer(layer: Any) -> None:
    """Reading-view defaults napari's layer data cannot carry: a colour bar on fat-fraction (and derived) maps,
    outlines for muscle labels. Called by the widgets when a layer is added."""
    from napari.layers import Image, Labels

    kind = layer_kind(layer)
    if isinstance(layer, Image) and kind in COLORBAR_KINDS and hasattr(layer, "colorbar"):
        _shader_parsing.install()  # before the colour bar's first draw parses its shaders (once per process)
        # size and font first: napari lays a shown colour bar's ticks out again at each (3 ms each, ad hoc)
        layer.colorbar.size = COLORBAR_SIZE
        layer.colorbar.font_size = 9
        layer.colorbar.visible = True
    elif isinstance(layer, Labels) and kind == "labels" and layer.ndim >= 2:
        layer.contour = LABEL_CONTOUR


def output_name(kind: str, arch: str | None, source_name: str) -> str:
    """Name of a derived layer, e.g. "SFF U-Net [t2w]": re-runs find and update it instead of adding copies."""
    label = ARCH_LABELS.get(arch, "") if arch else ""
    return {"sff": f"SFF {label} [{source_name}]", "std": f"SFF SD {label} [{source_name}]",
            "error": f"|error| {label} [{source_name}]",
            "difference": f"SFF DDPM - U-Net [{source_name}]"}[kind]
