"""Checks on whole test volumes, predicted as ``napari-sff predict`` would: ROI means and errors by tissue.

Each model predicts every volume once (:func:`napari_sff.inference.predict_volume`, native grid); then

* ``rois`` compares every labelled muscle's mean SFF with the truth (``<case>_labels``): MAE of ROI means,
  Pearson r, Bland-Altman bias and limits of agreement. Where the case has a tissue map, a label counts as a
  muscle when at least half its voxels are muscle tissue (:data:`MUSCLE_ROI_SHARE`): the independent phantoms
  also label subcutaneous fat, marrow, joint fluid, bladder, nerves and masses, whose means are summarised
  apart (``rois_all_structures``). The simulator labels muscle only. ``rois_core`` repeats the muscle ROIs
  without their rim (:data:`CORE_RIM` voxels in-plane, :func:`napari_sff.stats.roi_rim`), as ROIs drawn inside
  a muscle's border measure it: partial volume with the fat beside it is what the rim adds;
* ``tissues`` breaks the voxel error down by tissue class (``<case>_tissues`` + ``<case>_tissues.json``, which
  the independent phantoms write): per class its share of the body, true mean SFF, each model's MAE and bias and
  its share of that model's total absolute error. Muscle is split further by its true SFF, so that fatty
  infiltration that is missed shows apart from healthy muscle. Pooled over voxels of all volumes; ``per_case``
  lists each volume's body MAE and bias too, so that one anatomy (the case names say which) can be told apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_sff import io
from napari_sff.inference import choose_slice_axis, load_model, predict_volume
from napari_sff.io.label_names import read_label_names
from napari_sff.preprocess import normalise_t2w
from napari_sff.stats import bland_altman, roi_table
from training.data import CACHE_INFO
from training.metrics import pearson_r

#: Muscle voxels are split at these true SFF values in the tissue breakdown.
MUSCLE_SFF_BINS = (0.1, 0.3)
MUSCLE = "muscle"
#: A labelled ROI is a muscle ROI when at least this share of its voxels is muscle tissue (tissue map).
MUSCLE_ROI_SHARE = 0.5
#: ``rois_core``: each muscle ROI without the voxels within this many in-plane steps of another label.
CORE_RIM = 1


def muscle_labels(labels: np.ndarray, tissues: np.ndarray, names: dict[int, str]) -> set[int]:
    """The labels of ``labels`` whose voxels are mostly muscle tissue in ``tissues`` (named by ``names``)."""
    muscle = [label for label, name in names.items() if name == MUSCLE]
    flat = labels.ravel()
    voxels = np.bincount(flat)
    in_muscle = np.bincount(flat, weights=np.isin(tissues, muscle).ravel(), minlength=len(voxels))
    return {int(label) for label in np.flatnonzero(voxels)
            if label > 0 and in_muscle[label] >= MUSCLE_ROI_SHARE * voxels[label]}


def identity_prediction(raw: np.ndarray) -> np.ndarray:
    """The baseline: normalised T2w read directly as a fat fraction."""
    return np.clip(normalise_t2w(raw), 0, 1)


def _muscle_bin_names() -> list[str]:
    """Names of the bins ``np.digitize(sff, MUSCLE_SFF_BINS)`` numbers 0, 1, ...: "muscle, true SFF 0-10 %"."""
    lows = [0.0, *MUSCLE_SFF_BINS]
    names = [f"{MUSCLE}, true SFF {100 * low:.0f}–{100 * high:.0f} %"
             for low, high in zip(lows[:-1], MUSCLE_SFF_BINS, strict=True)]
    return [*names, f"{MUSCLE}, true SFF ≥ {100 * lows[-1]:.0f} %"]


def _tissue_labels(tissues: np.ndarray, names: dict[int, str], truth: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """The tissue map with muscle voxels relabelled by their true SFF bin (new ids above the largest)."""
    labels = tissues.astype(np.int32)
    muscle = [label for label, name in names.items() if name == MUSCLE]
    if not muscle:
        return labels, dict(names)
    first = max(names) + 1
    in_muscle = labels == muscle[0]
    labels = np.where(in_muscle, first + np.digitize(truth, MUSCLE_SFF_BINS), labels)
    names = {k: v for k, v in names.items() if k != muscle[0]}
    return labels, {**names, **{first + i: name for i, name in enumerate(_muscle_bin_names())}}


def _roi_summary(means: dict[str, list[float]], cases: int, steps: dict[str, int | None]) -> dict:
    truth = np.array(means.pop("truth"))
    summary = {"cases": cases, "rois": int(truth.size), "truth_mean": float(truth.mean()) if truth.size else None,
               "means": {"truth": truth.tolist(), **{name: list(values) for name, values in means.items()}}}
    for name, values in means.items():
        values = np.array(values)
        summary[name] = {"mae": float(np.abs(values - truth).mean()) if truth.size else float("nan"),
                         "r": pearson_r(values, truth),
                         **bland_altman(values, truth), "steps": steps.get(name)}
    return summary


def _tissue_summary(sums: dict[str, dict[str, float]], cases: int, sources: list[str],
                    per_case: list[dict]) -> dict:
    """Voxel-pooled rows from per-tissue sums of n, truth, signed and absolute error, and each case's body
    error (``per_case``: which volumes, or which anatomy by the case names, carry the pooled error)."""
    body = sum(row["n"] for row in sums.values())
    pooled = {f"{kind}_{name}": sum(row[f"{kind}_{name}"] for row in sums.values())
              for kind in ("abs", "signed") for name in sources}
    rows = []
    for tissue, row in sorted(sums.items(), key=lambda item: -item[1]["n"]):
        n = row["n"]
        entry = {"tissue": tissue, "voxels": int(n), "share_of_body": n / body, "truth_mean": row["truth"] / n}
        for name in sources:
            total_abs = pooled[f"abs_{name}"]
            entry[name] = {**_errors(row, n, name),
                           "share_of_error": row[f"abs_{name}"] / total_abs if total_abs else float("nan")}
        rows.append(entry)
    return {"cases": cases, "voxels": int(body), "rows": rows,
            "body": {name: _errors(pooled, body, name) for name in sources},
            "truth_mean": sum(row["truth"] for row in sums.values()) / body,
            "muscle_sff_bins": list(MUSCLE_SFF_BINS),
            "per_case": [{"case": case["case"], "voxels": int(case["n"]),
                          **{name: _errors(case, case["n"], name) for name in sources}}
                         for case in per_case if case["n"]]}


def _errors(totals: dict[str, float], n: float, source: str) -> dict[str, float]:
    """MAE and bias of ``source`` from its sums of absolute and signed error over ``n`` voxels."""
    return {"mae": totals[f"abs_{source}"] / n, "bias": totals[f"signed_{source}"] / n}


def volume_checks(cache: Path, split: str, models: dict[str, tuple[str, int]], *, device, batch_size: int,
                  rois: bool = True, tissues: bool = False, seed: int = 0, mirror: bool = True) -> dict:
    """``{"rois": ..., "tissues": ...}`` over the whole volumes of ``split`` (None for a check not asked for).

    ``models`` maps a model name to (weights, DDIM steps). Volumes come from the NIfTI folder the cache was
    built from; a case lacking the check's files (``<case>_labels``, ``<case>_tissues``) is left out of it.
    """
    # "unet_reference" (other U-Net weights) is a U-Net too: the architecture is the name's first word.
    loaded = {name: load_model(name.split("_")[0], weights, device)[0] for name, (weights, _) in models.items()}
    sources = ["identity", *models]
    kinds = tuple(kind for kind, wanted in (("labels", rois), ("tissues", tissues)) if wanted)
    means: dict[str, list[float]] = {"truth": [], **{name: [] for name in sources}}
    all_means: dict[str, list[float]] = {"truth": [], **{name: [] for name in sources}}  # every labelled structure
    core_means: dict[str, list[float]] = {"truth": [], **{name: [] for name in sources}}  # muscles without rim
    classified = 0  # cases whose labels were told apart by a tissue map
    sums: dict[str, dict[str, float]] = {}
    per_case: list[dict] = []  # each volume's body sums, beside the pooled ones
    roi_cases = tissue_cases = 0
    info = json.loads((cache / CACHE_INFO).read_text())
    folder = Path(info["data_dir"])
    for case in info["splits"][split]["cases"]:
        found = {kind: sorted(folder.glob(f"{case}_{kind}.nii*")) for kind in ("t2w", "sff", *kinds)}
        if not (found["t2w"] and found["sff"]) or not any(found[kind] for kind in kinds):
            continue
        t2w, sff = io.read_nifti(found["t2w"][0]), io.read_nifti(found["sff"][0])
        axis = choose_slice_axis(t2w.spacing)
        maps = {"truth": np.clip(sff.array, 0, 1),
                "identity": np.moveaxis(identity_prediction(np.moveaxis(t2w.array, axis, 0)), 0, axis)}
        for name, model in loaded.items():
            maps[name] = predict_volume(t2w.array, t2w.spacing, name.split("_")[0], model=model, device=str(device),
                                        batch_size=batch_size, ddim_steps=models[name][1], seed=seed,
                                        mirror=mirror).sff
        # The case's tissue map, read once: it tells muscle ROIs apart and makes the tissue breakdown.
        names_file = folder / f"{case}_tissues.json"
        tissue_files = sorted(folder.glob(f"{case}_tissues.nii*"))
        tissue_map = tissue_names = None
        if tissue_files and names_file.exists():
            tissue_map, tissue_names = io.read_nifti(tissue_files[0]).array, read_label_names(names_file)
        if rois and found.get("labels"):
            labels = io.read_nifti(found["labels"][0]).array.astype(np.int32)
            muscles = None
            if tissue_map is not None:
                muscles = muscle_labels(labels, tissue_map, tissue_names)
                classified += 1
            for row in roi_table(maps, labels, t2w.spacing):
                all_means[row.source].append(row.mean)
                if muscles is None or row.label in muscles:
                    means[row.source].append(row.mean)
            for row in roi_table(maps, labels, t2w.spacing, exclude_rim=CORE_RIM):  # every map is finite:
                if row.n_voxels and (muscles is None or row.label in muscles):  # an all-rim ROI for all of them
                    core_means[row.source].append(row.mean)
            roi_cases += 1
        if tissues and tissue_map is not None:
            labels, names = _tissue_labels(tissue_map, tissue_names, maps["truth"])
            this_case = {"case": case, "n": 0.0, "truth": 0.0}
            for row in roi_table(maps, labels, t2w.spacing, reference="truth", label_names=names):
                for totals in (sums.setdefault(row.name, {"n": 0.0, "truth": 0.0}), this_case):
                    if row.source == "truth":
                        totals["n"] += row.n_voxels
                        totals["truth"] += row.mean * row.n_voxels
                    else:
                        totals[f"abs_{row.source}"] = totals.get(f"abs_{row.source}", 0.0) + row.mae * row.n_voxels
                        totals[f"signed_{row.source}"] = (totals.get(f"signed_{row.source}", 0.0)
                                                          + row.diff_mean * row.n_voxels)
            per_case.append(this_case)
            tissue_cases += 1
    steps = {name: steps for name, (_, steps) in models.items()}
    return {"rois": _roi_summary(means, roi_cases, steps) if rois else None,
            "rois_all_structures": _roi_summary(all_means, roi_cases, steps) if rois and classified else None,
            "rois_core": _roi_summary(core_means, roi_cases, steps) if rois else None,
            "tissues": _tissue_summary(sums, tissue_cases, sources, per_case) if tissues and sums else None}


def tissue_markdown(summary: dict, labels: dict[str, str], split: str) -> list[str]:
    """The per-tissue table: share of body, true mean, then MAE / bias / share of error per source."""
    sources = [name for name in labels if name in summary["body"]]
    lines = [f"Error by tissue ({summary['voxels']:,} body voxels of {summary['cases']} whole {split} volumes, "
             "pooled; bias = prediction − truth; share = of that model's total absolute error):", "",
             "| tissue | % of body | true SFF | " + " | ".join(f"{labels[s]} MAE / bias / share" for s in sources) + " |",
             "|---|---|---|" + "---|" * len(sources)]
    for row in [*summary["rows"], {"tissue": "**body**", "share_of_body": 1.0, "truth_mean": summary["truth_mean"],
                                   **{s: {**summary["body"][s], "share_of_error": 1.0} for s in sources}}]:
        cells = " | ".join(f"{row[s]['mae']:.3f} / {row[s]['bias']:+.3f} / {100 * row[s]['share_of_error']:.0f} %"
                           for s in sources)
        lines.append(f"| {row['tissue']} | {100 * row['share_of_body']:.1f} | {row['truth_mean']:.3f} | {cells} |")
    return lines
