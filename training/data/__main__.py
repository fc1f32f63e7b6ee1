"""``python -m training.data DATA_DIR CACHE_DIR``: build the slice cache of a folder of pairs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from training.data.cache import CACHE_INFO, build_slice_cache


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__)
    parser.add_argument("data_dir", help="folder with <case>_t2w + <case>_sff (or _fat + _water), NIfTI or DICOM")
    parser.add_argument("cache_dir")
    parser.add_argument("--size", type=int, default=256, help="slices are resampled to fit, then padded to this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subject-regex", help="regex whose 'subject' (or first) group names the subject of a "
                                                "case: cases of one subject share a split")
    parser.add_argument("--spacing-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="in-plane pixel spacing (mm) the slices are resampled into (default: native)")
    parser.add_argument("--register", action="store_true", help="rigidly register each SFF to its T2w first")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--test-only", action="store_true",
                        help="every case in the test split: a held-out set to evaluate on, never to train on "
                             "(e.g. python -m training.phantoms, an external cohort)")
    args = parser.parse_args(argv)
    fractions = {"val_fraction": 0.0, "test_fraction": 1.0} if args.test_only else {}
    try:
        build_slice_cache(args.data_dir, args.cache_dir, size=args.size, seed=args.seed,
                          subject_regex=args.subject_regex, spacing_range=args.spacing_range,
                          register=args.register, workers=args.workers, **fractions)
    except (ValueError, FileNotFoundError) as exc:
        print(f"python -m training.data: error: {exc}", file=sys.stderr)
        return 2
    info = json.loads((Path(args.cache_dir) / CACHE_INFO).read_text())
    for split, content in info["splits"].items():
        print(f"{split}: {content['slices']} slices from {len(content['cases'])} cases "
              f"({len(content['subjects'])} subjects)")
    for reason in info["refused"].values():
        print(f"refused: {reason}")
    for case, reason in info["flagged"].items():
        print(f"flagged {case}: {reason} (possible motion or misregistration; try --register)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
