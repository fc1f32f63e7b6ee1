"""The report as Markdown: the paper's table for the run, then a table or a line for each check it holds."""

from __future__ import annotations

from pathlib import Path

from training.volume_checks import CORE_RIM, MUSCLE_ROI_SHARE, tissue_markdown


def _mean_sd_cell(row: dict, name: str, digits: int) -> str:
    """``mean ± SD`` of an image metric; "n/a" for reports made before the metric existed."""
    if name not in row:
        return "n/a"
    return f"{row[name]:.{digits}f} ± {row.get(name + '_sd', float('nan')):.{digits}f}"


def _mae_r_cell(summary: dict) -> str:
    return f"{summary['mae']:.3f} ± {summary['mae_sd']:.3f}; {summary['r']:.3f}"


#: The ablation tables' columns: their header names and the keys of a row (``samples`` defaults to 1).
_ABLATION_KEYS = {"DDIM steps": "ddim_steps", "samples": "samples", "DDPM samples averaged": "samples"}


def _ablation_table(rows: list[dict], first: str, second: str) -> list[str]:
    """A DDIM-steps or samples ablation: ``first`` and ``second`` name its leading columns."""
    lines = ["", f"| {first} | {second} | r | MAE ± SD | SSIM ± SD | PSNR ± SD dB | ms/image |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lead = [row.get(key, 1) if key == "samples" else row[key] for key in (_ABLATION_KEYS[first], _ABLATION_KEYS[second])]
        lines.append(f"| {lead[0]} | {lead[1]} | {row['r']:.3f} | "
                     f"{row['mae']:.3f} ± {row['mae_sd']:.3f} | {_mean_sd_cell(row, 'ssim', 3)} | "
                     f"{_mean_sd_cell(row, 'psnr', 1)} | {row['ms_per_image']:.1f} |")
    return lines


def markdown(report: dict) -> str:
    """The paper's table for this run, plus the ablation and the paired tests."""
    mirrored = report.get("unet_mirror", False)
    names = {"identity": "Identity (normalised T2w)", "unet": "U-Net, mean with mirror" if mirrored else "U-Net",
             "unet_one_pass": "U-Net, one pass",
             "unet_other_precision": f"U-Net in {report['models'].get('unet_other_precision', {}).get('precision')}"
                                     + (", mean with mirror" if mirrored else ""),
             "unet_reference": "U-Net, reference weights" + (", mean with mirror" if mirrored else ""),
             "ddpm": "DDPM (DDIM)", "ddpm_reference": "DDPM (DDIM), reference weights"}
    split = report["split"]
    lines = [f"{split.capitalize()} split: {report['images']} images, device {report['gpu'] or report['device']}, "
             f"batch size {report['batch_size']}, precision {report.get('precision', 'float32')}.", "",
             "| model | r (body, pooled) | r per image (mean) | MAE ± SD over images (body) | SSIM ± SD (body) | "
             "PSNR ± SD dB (body) | r (whole image) | MAE ± SD (whole image) | ms/image |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, row in report["models"].items():
        label = names[key] + (f", {row['ddim_steps']} steps" if "ddim_steps" in row else "")
        if key.startswith("ddpm") and row["images"] != report["images"]:
            label += f" ({row['images']} images)"
        lines.append(f"| {label} | {row['r']:.3f} | {row['r_image_mean']:.3f} | {row['mae']:.3f} ± "
                     f"{row['mae_sd']:.3f} | {_mean_sd_cell(row, 'ssim', 3)} | {_mean_sd_cell(row, 'psnr', 1)} | "
                     f"{row['r_full']:.3f} | {row['mae_full']:.3f} ± {row['mae_full_sd']:.3f} | "
                     f"{row['ms_per_image']:.1f} |")
    other = report["models"].get("unet_other_precision")
    if other:
        moved = other["map_difference_in_body"]
        lines += ["", f"{names['unet_other_precision']}: its maps lie {100 * moved['mean']:.2f} pp from the main "
                      f"run's on average in the body ({100 * moved['p99']:.2f} pp at the 99th percentile, "
                      f"{100 * moved['max']:.1f} pp at most)."]
    for rows, first, second in ((report["ddim_ablation"], "DDIM steps", "samples"),
                                (report.get("samples_ablation"), "DDPM samples averaged", "DDIM steps")):
        if rows:
            lines += _ablation_table(rows, first, second)
    if report.get("robustness"):
        present = [key for key in names if key in report["robustness"][0]]
        ddpm_steps = f" (DDPM: {report['robustness_ddim_steps']} DDIM steps)" if "ddpm" in present else ""
        lines += ["", f"| perturbation{ddpm_steps}: MAE ± SD over images (body); r | "
                  + " | ".join(names[k] for k in present) + " |",
                  "|---|" + "---|" * len(present)]
        for row in report["robustness"]:
            cells = " | ".join(_mae_r_cell(row[k]) for k in present)
            lines.append(f"| {row['perturbation']} | {cells} |")
    if report.get("rois") and not report["rois"]["rois"]:
        lines += ["", f"ROI means: no labelled ROIs in the {split} volumes (no <case>_labels files)."]
    elif report.get("rois"):
        rois = report["rois"]
        lines += ["", f"ROI means ({rois['rois']} labelled muscles in {rois['cases']} whole {split} volumes; "
                  f"mean true SFF {rois['truth_mean']:.3f}):", "",
                  "| model | MAE of ROI means | r | Bland–Altman bias | 95 % limits of agreement |",
                  "|---|---|---|---|---|"]
        for key in names:
            if key in rois:
                row = rois[key]
                label = names[key] + (f", {row['steps']} steps" if key.startswith("ddpm") else "")
                lines.append(f"| {label} | {row['mae']:.3f} | {row['r']:.3f} | {row['bias']:+.3f} | "
                             f"{row['loa_low']:+.3f} to {row['loa_high']:+.3f} |")
        core = report.get("rois_core")
        if core and core["rois"]:
            cells = ", ".join(f"{names[key]} {core[key]['mae']:.3f} (bias {core[key]['bias']:+.3f}, r "
                              f"{core[key]['r']:.3f})" for key in names if key in core)
            lines += ["", f"The same muscle ROIs without their rim ({CORE_RIM} voxel in-plane beside another label "
                      f"or the background; {core['rois']} ROIs keep a core), MAE of ROI means: {cells}."]
        every = report.get("rois_all_structures")
        if every and every["rois"] != rois["rois"]:  # the labels held other structures too: said apart
            cells = ", ".join(f"{names[key]} {every[key]['mae']:.3f}" for key in names if key in every)
            lines += ["", f"Muscle ROIs are labels with at least {100 * MUSCLE_ROI_SHARE:.0f} % muscle tissue; all "
                      f"{every['rois']} labelled structures (with fat, marrow, fluid, nerves, masses), MAE of ROI "
                      f"means: {cells}."]
    if report.get("tissues"):
        lines += ["", *tissue_markdown(report["tissues"], names, split)]
    spacing = report.get("spacing_check", {}).get("rows")
    if spacing:
        check = report["spacing_check"]
        present = [key for key in spacing[0] if key not in ("size", "spacing_mm")]
        label = {"identity": names["identity"], **{f"{k}_{how}": f"{names[k]} {how}" for k in ("unet", "ddpm")
                                                   for how in ("native", "resampled")}}
        lines += ["", f"Pixel spacing check: {check['cases_per_size']} fresh simulated cases per matrix size "
                  f"(seed {check['seed']}); MAE ± SD over images (body); r. *native*: predicted on the input "
                  "grid; *resampled*: moved into the model's training spacing and back.", "",
                  "| matrix (pixel spacing) | " + " | ".join(label[k] for k in present) + " |",
                  "|---|" + "---|" * len(present)]
        for row in spacing:
            cells = " | ".join(_mae_r_cell(row[k]) for k in present)
            low, high = row["spacing_mm"]
            lines.append(f"| {row['size']}² ({low:.2f}–{high:.2f} mm) | {cells} |")
    check = report.get("feature_distance")
    if check:
        flagged = ", ".join(check["cases_flagged"]) or "none"
        lines += ["", f"U-Net feature distance (napari_sff.domain; training slices' 99th percentile "
                  f"{check['threshold']:.2f}): median {check['median_distance']:.2f}, "
                  f"{100 * check['images_beyond_threshold']:.0f} % of images beyond; cases predict flags: "
                  f"{len(check['cases_flagged'])} of {check['cases']} ({flagged}); Spearman with image MAE "
                  f"{check['spearman_distance_vs_image_mae']:.2f} (p = {check['spearman_p']:.2g}); MAE of the "
                  f"nearer / farther half {check['mae_nearer_half']:.3f} / {check['mae_farther_half']:.3f}."]
    for figure in report.get("figures", []):
        lines += ["", f"![{Path(figure).stem.replace('_', ' ')}]({figure})"]
    if report["paired_tests"]:
        lines += ["", "| paired Wilcoxon on per-image MAE | n | median difference | p |", "|---|---|---|---|"]
        for name, test in report["paired_tests"].items():
            p = test["p_value"]  # NaN (null in the JSON): under two pairs, or every pair equal
            p_cell = f"{p:.2g}" if p is not None and p == p else ("no test: every pair equal" if test["n"] >= 2
                                                                else "no test: under two images")
            lines.append(f"| {name.replace('_', ' ')} | {test['n']} | {test['median_difference']:+.4f} | {p_cell} |")
    return "\n".join(lines) + "\n"
