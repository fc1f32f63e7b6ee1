"""``napari-sff`` command line: a thin argparse front over the same functions the widgets call."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path


def _simulate(args: argparse.Namespace) -> int:
    from napari_sff.sample_data import write_cases

    manifest = write_cases(args.out_dir, args.cases, seed=args.seed, size=args.size, n_slices=args.slices,
                           overwrite=args.overwrite)
    print(f"wrote {args.cases} case(s) to {args.out_dir} (manifest: {manifest})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_sff import io
    from napari_sff.inference import ARCH_LABELS, predict_volume

    output = args.output
    if not io.is_nifti_path(output):
        raise ValueError(f"{output}: output must end in .nii or .nii.gz")
    std_path = f"{io.nifti_stem(output)}_std.nii.gz" if args.samples > 1 and args.model == "ddpm" else None
    if std_path:
        std_path = str(Path(output).with_name(std_path))
    # Checked before predicting (write_nifti checks again): a DDPM run can take minutes to reach the write.
    for target in filter(None, (output, std_path)):
        if Path(target).resolve() == Path(args.input).resolve():
            raise ValueError(f"{target} is the input file; choose another output name")
        if Path(target).exists() and not args.overwrite:
            raise ValueError(f"{target} exists; choose another name or pass --overwrite")
    volume = io.read_nifti(args.input)
    array = volume.array
    if array.ndim == 4:
        if args.volume is None:
            raise ValueError(f"{args.input} is 4D ({array.shape[0]} volumes); pick one with --volume N")
        array = array[args.volume]
    bar = tqdm(total=1, unit="slice" if args.model == "unet" else "step", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    prediction = predict_volume(
        array, volume.spacing, args.model, weights=args.weights, device=args.device, slice_axis=args.slice_axis,
        batch_size=args.batch_size, ddim_steps=args.ddim_steps, samples=args.samples, seed=args.seed,
        progress=progress, resample=not args.no_resample,
    )
    bar.close()
    geometry = volume if array.ndim == volume.array.ndim else io.Volume(array, volume.affine, {})
    io.write_nifti(geometry.like(prediction.sff.astype("float32")), output, overwrite=args.overwrite)
    written = [output]
    if std_path and prediction.std is not None:
        io.write_nifti(geometry.like(prediction.std.astype("float32")), std_path, overwrite=args.overwrite)
        written.append(std_path)
    resampled = (f", predicted at {prediction.model_spacing[0]:.2f} × {prediction.model_spacing[1]:.2f} mm "
                 "(the model's training pixel size) and resampled back" if prediction.model_spacing else "")
    print(f"{ARCH_LABELS[args.model]} on {prediction.device}: {len(prediction.slice_indices)} slices along axis "
          f"{prediction.slice_axis}, {prediction.ms_per_slice:.1f} ms/slice{resampled} -> {', '.join(written)}")
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
    from napari_sff.models import CheckpointError, default_weights_path, read_metadata

    result["weights"] = {}
    for arch in ("unet", "ddpm"):
        path = default_weights_path(arch)
        entry: dict = {"path": str(path), "present": path.exists()}
        if path.exists():
            try:  # what predict compares a scan's pixels with (see inference.model_input_spacing)
                entry["input_spacing_mm"] = read_metadata(path).get("metadata", {}).get("input_spacing_mm")
            except CheckpointError as exc:
                entry["error"] = str(exc)
        result["weights"][arch] = entry
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
        if weights.get("error"):
            state = f"unreadable: {weights['error']}"
        elif weights.get("input_spacing_mm"):
            low, high = weights["input_spacing_mm"]
            state += f"; trained on {low:.2f}-{high:.2f} mm pixels"
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

    predict = sub.add_parser("predict", help="predict an SFF map from a T2w NIfTI file")
    predict.add_argument("input", help="T2w NIfTI (.nii or .nii.gz)")
    predict.add_argument("-o", "--output", required=True, help="SFF NIfTI to write (float32, input geometry)")
    predict.add_argument("--model", choices=("unet", "ddpm"), default="unet")
    predict.add_argument("--weights", help=".safetensors checkpoint (default: the shipped weights)")
    predict.add_argument("--device", default="auto", help="auto (cuda -> mps -> cpu), cpu, cuda, cuda:N or mps")
    predict.add_argument("--ddim-steps", type=int, default=50, help="DDPM only")
    predict.add_argument("--samples", type=int, default=1, help="DDPM samples; >1 also writes <output>_std")
    predict.add_argument("--seed", type=int, default=0)
    predict.add_argument("--batch-size", type=int, default=8)
    predict.add_argument("--slice-axis", default="auto", choices=("auto", "0", "1", "2"),
                         help="2D slicing axis in display order (auto: the largest voxel spacing)")
    predict.add_argument("--volume", type=int, help="which volume of a 4D input")
    predict.add_argument("--no-resample", action="store_true",
                         help="predict on the input grid even where its pixel size is outside the model's training range")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing output (never the input)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(run=_predict)

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
