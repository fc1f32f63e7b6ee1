"""``napari-sff`` command line: a thin argparse front over the same functions the widgets call."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from collections.abc import Sequence


def _simulate(args: argparse.Namespace) -> int:
    from napari_sff.sample_data import write_cases

    manifest = write_cases(args.out_dir, args.cases, seed=args.seed, size=args.size, n_slices=args.slices,
                           overwrite=args.overwrite)
    print(f"wrote {args.cases} case(s) to {args.out_dir} (manifest: {manifest})")
    return 0


def info() -> dict:
    """Versions, available torch devices and where the shipped weights live."""
    import napari_sff

    versions = {"napari-sff": napari_sff.__version__, "python": platform.python_version()}
    for package in ("torch", "napari", "numpy", "nibabel", "monai", "safetensors", "scikit-image"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    result: dict = {"versions": versions}
    try:
        from napari_sff.inference import available_devices

        result["devices"] = available_devices()
    except ImportError as exc:  # torch missing: say so rather than crash
        result["devices"] = f"unavailable ({exc})"
    from napari_sff.models import default_weights_path

    result["weights"] = {
        arch: {"path": str(default_weights_path(arch)), "present": default_weights_path(arch).exists()}
        for arch in ("unet", "ddpm")
    }
    return result


def _info(args: argparse.Namespace) -> int:
    report = info()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name, version in report["versions"].items():
        print(f"{name:>14}: {version or 'not installed'}")
    print(f"{'devices':>14}: {report['devices']}")
    for arch, weights in report["weights"].items():
        state = "present" if weights["present"] else "MISSING"
        print(f"{arch + ' weights':>14}: {weights['path']} ({state})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-sff", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    simulate = sub.add_parser("simulate", help="write simulated paired T2w / SFF / label NIfTI cases")
    simulate.add_argument("out_dir")
    simulate.add_argument("--cases", type=int, default=4)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--size", type=int, default=256, help="in-plane matrix size")
    simulate.add_argument("--slices", type=int, default=24)
    simulate.add_argument("--overwrite", action="store_true", help="replace files of an earlier run")
    simulate.set_defaults(run=_simulate)

    info_parser = sub.add_parser("info", help="versions, torch devices, shipped weights")
    info_parser.add_argument("--json", action="store_true")
    info_parser.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as exc:
        # One clear line, no traceback: every error raised by napari-sff says what to do.
        print(f"napari-sff {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
