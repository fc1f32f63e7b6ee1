"""Short column names for maps ("GT", "U-Net", "DDPM"), shared by the ROI widget's table and the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from napari_sff.inference import ARCH_LABELS

REFERENCE_SHORT = "GT"


def short_map_names(
    sources: Sequence[str], reference: str | None = None, models: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """Column names a table fits: the architecture label of a prediction ("U-Net", "DDPM"), "GT" for a measured
    reference, else the layer name before " [". Repeats get " 2", " 3", so columns stay distinguishable."""
    models = models or {}
    names: dict[str, str] = {}
    used: dict[str, int] = {}
    for source in sources:
        model = models.get(source)
        if model in ARCH_LABELS:
            name = ARCH_LABELS[model]
        elif source == reference:
            name = REFERENCE_SHORT
        else:
            name = source.split(" [")[0]
        used[name] = used.get(name, 0) + 1
        names[source] = name if used[name] == 1 else f"{name} {used[name]}"
    return names
