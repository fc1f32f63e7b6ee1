"""Save as DICOM: the selected SFF or SD layer written as a new series in its source study.

Its own part because it is the widget's only file output; the writing itself is :func:`napari_sff.io.write_layer_dicom`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_sff import io
from napari_sff.widgets._background import save_in_background


class ExportMixin:
    """The widget's DICOM export. Uses the widget's ``viewer`` and ``native`` (the file dialog's parent)."""

    def _on_save_dicom(self, *_: Any) -> None:
        from qtpy.QtWidgets import QFileDialog

        folder, _ = QFileDialog.getSaveFileName(self.native, "Save as DICOM series: name a new folder")
        if folder:
            self.save_dicom(folder, background=True)

    def save_dicom(self, folder: str | Path, layer: Any = None, *, background: bool = False,
                   **options: Any) -> Any:
        """Write ``layer`` (default: the selected one) with :func:`io.write_layer_dicom`; problems are
        notifications. Returns the series folder (None on a problem), or with ``background`` (the button: a
        series of a 512 x 512 x 100 map is seconds of writing) the started worker, which notifies when done."""
        import napari
        from napari.utils.notifications import show_error, show_info

        layer = layer if layer is not None else self.viewer.layers.selection.active
        if not isinstance(layer, napari.layers.Image):
            show_error("napari-sff: select the SFF layer to save as DICOM")
            return None
        meta = {"name": layer.name, "metadata": layer.metadata, "scale": layer.scale, "translate": layer.translate,
                "rotate": layer.rotate}
        name = layer.name

        def saved(out: Path) -> str:
            return f"napari-sff: saved '{name}' as a DICOM series in {out}"

        def failed(exc: BaseException) -> str:
            return f"napari-sff: {exc}"

        if background:
            return save_in_background(io.write_layer_dicom, layer.data, meta, folder, **options, saved=saved,
                                      failed=failed)
        try:
            out = io.write_layer_dicom(layer.data, meta, folder, **options)
        except (ValueError, OSError) as exc:
            show_error(failed(exc))
            return None
        show_info(saved(out))
        return out
