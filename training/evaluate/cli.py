"""The command line, ``python -m training.evaluate --data ... [--unet ...] [--ddpm ...]``: options onto
:func:`evaluate`, the report printed and written as JSON and Markdown."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from napari_sff.inference.devices import PRECISIONS
from napari_sff.io import atomic_write_text

from . import __doc__ as _overview
from .report import markdown
from .robustness import SPACING_CHECK_SIZES
from .run import evaluate

#: The help's description: the package's overview without its list of parts, as it read when this was one module.
_HELP = _overview.split("\nParts: ")[0] if _overview else None  # None under python -OO, as before


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="slice cache or folder of <case>_t2w/_sff NIfTI pairs")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--unet", help="U-Net checkpoint")
    parser.add_argument("--unet-reference", help="other U-Net weights scored on the same images, with a paired test "
                                                 "against --unet (e.g. the shipped ones against a retrained one)")
    parser.add_argument("--ddpm", help="DDPM checkpoint")
    parser.add_argument("--ddpm-reference", help="other DDPM weights scored on --ddpm's images with the same DDIM "
                                                 "steps, samples and noise, with a paired test against --ddpm")
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--ablation", type=lambda s: [int(v) for v in s.split(",") if v], default=[],
                        help="comma-separated DDIM step counts, e.g. 1,5,10,25,50")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--samples-ablation", type=lambda s: [int(v) for v in s.split(",") if v], default=[],
                        help="comma-separated DDPM sample counts averaged at --ddim-steps, e.g. 1,4,8")
    parser.add_argument("--figures", help="write PNG figures here: DDIM-steps and samples ablation, "
                                          "Bland-Altman of ROI means (with --rois), example panels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-images", type=int)
    parser.add_argument("--ddpm-max-images", type=int, help="evaluate the DDPM on N of the images only, spread "
                                                            "evenly (the slow model, every case still represented)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rois", action="store_true",
                        help="compare mean SFF per labelled ROI over whole test volumes (needs <case>_labels files)")
    parser.add_argument("--tissues", action="store_true",
                        help="break the voxel error of whole test volumes down by tissue class (needs "
                             "<case>_tissues files, as python -m training.phantoms writes)")
    parser.add_argument("--check-ddim-steps", type=int, help="DDIM steps of the DDPM in --rois and --robustness (default: --ddim-steps)")
    parser.add_argument("--robustness", action="store_true",
                        help="also score every model on perturbed copies (orientation, noise, bias, 8-bit)")
    parser.add_argument("--spacing-check", type=int, default=0, metavar="CASES",
                        help="also score CASES fresh simulated cases at matrix sizes "
                             f"{', '.join(map(str, SPACING_CHECK_SIZES))} (other pixel spacings), native and resampled")
    parser.add_argument("--spacing-seed", type=int, default=777, help="simulator seed of --spacing-check")
    parser.add_argument("--no-mirror", dest="mirror", action="store_false",
                        help="U-Net: one pass per slice (default: the mean with the mirrored slice, as predict does)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=("auto", *PRECISIONS),
                        help="auto: as predict runs on this device (its calibration or default); float32 for tables "
                             "that compare across machines")
    parser.add_argument("--compare-precision", choices=PRECISIONS,
                        help="also score the U-Net in this precision on the same images: paired test, and how far "
                             "its maps lie from the main run's in the body")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--markdown", help="write the markdown table here")
    args = parser.parse_args(argv)
    if args.ddpm_reference and not args.ddpm:
        parser.error("--ddpm-reference is scored against --ddpm on the same images: give --ddpm too")
    report = evaluate(args)
    table = markdown(report)
    print(table)
    for path, text in ((args.out, json.dumps(report, indent=1)), (args.markdown, table)):
        if path:
            atomic_write_text(path, text)
    return 0
