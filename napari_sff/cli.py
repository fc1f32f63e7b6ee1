"""``napari-sff`` command line: a thin argparse front over the same functions the widgets call."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path


def _simulate(args: argparse.Namespace) -> int:
    from napari_sff.sample_data import write_cases

    manifest = write_cases(args.out_dir, args.cases, seed=args.seed, size=args.size, n_slices=args.slices,
                           overwrite=args.overwrite, domain=args.domain, tissues=args.tissues,
                           muscle_prior=args.muscle_prior, anatomies=args.anatomies)
    print(f"wrote {args.cases} case(s) to {args.out_dir} (manifest: {manifest})")
    return 0


#: ``predict --precision``: spelled out, so that building the parser imports no inference code (a test checks them
#: against napari_sff.inference.devices.PRECISIONS).
PRECISION_CHOICES = ("auto", "float32", "bfloat16", "float16")


def _settings(args: argparse.Namespace):
    from napari_sff.jobs import PredictSettings

    return PredictSettings(arch=args.model, weights=args.weights, device=_rank_device(args.device),
                           ddim_steps=args.ddim_steps, samples=args.samples, seed=args.seed,
                           batch_size=args.batch_size, slice_axis=args.slice_axis, resample=not args.no_resample,
                           mirror=not args.no_mirror, precision=None if args.precision == "auto" else args.precision,
                           series=args.series, volume=args.volume, dicom_storage=args.dicom_storage,
                           new_study=args.new_study)


def _rank_device(device: str) -> str:
    """Under torchrun each process takes its own GPU (LOCAL_RANK) when the device is left to choose."""
    import os

    local_rank = os.environ.get("LOCAL_RANK")
    if device == "auto" and local_rank is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from napari_sff.inference import available_devices

        if "cuda" in available_devices():
            return f"cuda:{int(local_rank)}"
    return device


def _is_cohort(inputs: Sequence[str]) -> bool:
    """Several inputs, a glob, or a folder holding NIfTI files (or no DICOM files): a cohort run. A folder of DICOM
    files only is one study (its series are chosen with --series); DICOM series of many subjects are given as
    several inputs or a glob ('STUDIES/*/')."""
    import glob
    import os

    from napari_sff import io

    if len(inputs) > 1 or glob.has_magic(inputs[0]):
        return True
    path = Path(inputs[0])
    if not path.is_dir():
        return False
    if any(io.is_nifti_path(name) for _, _, files in os.walk(path) for name in files):
        return True
    return not io.is_dicom_path(path)


def _predict(args: argparse.Namespace) -> int:
    if _is_cohort(args.input):
        return _predict_cohort(args)
    from tqdm import tqdm

    from napari_sff import jobs
    from napari_sff.inference import ARCH_LABELS

    (source,) = args.input
    settings = _settings(args)
    job = jobs.read_job(source, settings)
    jobs.check_outputs(source, args.output, settings, overwrite=args.overwrite, source=job.geometry)
    bar = tqdm(total=1, unit="slice" if args.model == "unet" else "step", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    prediction = jobs.predict_job(job, settings, progress=progress)
    bar.close()
    written = jobs.write_job(job, prediction, args.output, settings, overwrite=args.overwrite)
    resampled = (f", predicted at {prediction.model_spacing[0]:.2f} × {prediction.model_spacing[1]:.2f} mm "
                 "(the model's training pixel size) and resampled back" if prediction.model_spacing else "")
    print(f"{ARCH_LABELS[args.model]} on {prediction.device}: {len(prediction.slice_indices)} slices along axis "
          f"{prediction.slice_axis}, {prediction.ms_per_slice:.1f} ms/slice"
          f"{' (mean with the mirrored slices)' if prediction.mirrored else ''}"
          f"{'' if prediction.precision == 'float32' else f', {prediction.precision}'}{resampled} -> "
          f"{', '.join(map(str, written))}")
    return 0


def _predict_cohort(args: argparse.Namespace) -> int:
    """Many inputs -> a folder mirroring them; this rank's share only; exit 1 when any file failed."""
    from tqdm import tqdm

    from napari_sff import cohort, io, jobs
    from napari_sff.inference import load_model, resolve_device

    out_dir = Path(args.output)
    if io.is_nifti_path(out_dir):
        raise ValueError(f"{out_dir}: with several inputs -o is a folder (outputs mirror the inputs' paths)")
    settings = _settings(args)
    suffix = "_sff" if args.output_format == "dicom" else cohort.OUTPUT_SUFFIX
    items = cohort.collect_inputs(args.input)
    rank, world = cohort.rank_and_world(args.shard)
    share = cohort.my_share(items, rank, world)
    if not share:
        print(f"rank {rank}/{world}: no inputs in this share ({len(items)} in all)")
        return 0
    load_model(settings.arch, settings.weights, resolve_device(settings.device))  # once, before the first read
    bar = tqdm(total=len(share), unit="volume", disable=args.quiet, desc=f"rank {rank}/{world}" if world > 1 else None)

    def progress(item, state: str) -> None:
        bar.update(1)
        bar.set_postfix_str(state, refresh=False)

    summary = cohort.run_cohort(
        share, out_dir, read=lambda path: jobs.read_job(path, settings),
        predict=lambda job: jobs.predict_job(job, settings),
        write=lambda job, prediction, output: jobs.write_job(job, prediction, output, settings,
                                                             overwrite=args.overwrite),
        overwrite=args.overwrite, progress=progress, suffix=suffix,
        predict_many=lambda batch: jobs.predict_jobs(batch, settings),
        group=args.group_volumes or jobs.default_group(settings.device),
    )
    bar.close()
    from napari_sff.cohort import qc

    table = qc.write_qc_table(qc.qc_rows(share, out_dir, suffix, summary), qc.qc_table_path(out_dir, rank, world))
    prefix = f"rank {rank}/{world}: " if world > 1 else ""
    for line in [*summary.lines(), f"QC table (one row per input, from each map's .json sidecar): {table}"]:
        print(prefix + line, file=sys.stderr if line.startswith("failed") else sys.stdout)
    return 1 if summary.failed else 0


def _dixon(args: argparse.Namespace) -> int:
    from napari_sff import dixon, io

    output = args.output
    if not io.is_nifti_path(output):
        raise ValueError(f"{output}: output must end in .nii or .nii.gz")
    io.refuse_outputs([output], inputs=[args.fat, args.water], overwrite=args.overwrite)
    fat, water = dixon.read_pair(args.fat, args.water, fat_series=args.fat_series, water_series=args.water_series)
    noise_floor = dixon.DEFAULT_NOISE_FLOOR if args.noise_floor is None else args.noise_floor
    sff = dixon.dixon_volume(fat, water, noise_floor=noise_floor,
                             floor_percentile=None if args.absolute_floor else dixon.DEFAULT_FLOOR_PERCENTILE)
    io.write_nifti(sff, output, overwrite=args.overwrite)
    print(f"{dixon.summary(sff)} -> {output}")
    return 0


def _roi_stats(args: argparse.Namespace) -> int:
    from napari_sff import io
    from napari_sff.cohort import table
    from napari_sff.io.label_names import read_label_names

    output = Path(args.output)
    if output.suffix.lower() != ".csv":
        raise ValueError(f"{output}: the table must end in .csv")
    summary_path = output.with_name(f"{output.stem}_summary.csv")
    figure_path = output.with_name(f"{output.stem}_bland_altman.png")
    written = [output, *((summary_path, figure_path) if args.reference else ())]
    io.refuse_outputs(written, overwrite=args.overwrite)
    maps = dict(table.parse_map_option(text) for text in args.map)
    names = read_label_names(args.label_names) if args.label_names else None
    if args.exclude_rim < 0:
        raise ValueError(f"--exclude-rim {args.exclude_rim}: give 0 (whole ROIs) or more voxels")
    result = table.cohort_rows(args.labels, maps, reference=args.reference, label_names=names,
                               exclude_rim=args.exclude_rim)
    if not result.rows:
        reasons = "; ".join(f"{case}: {reason}" for case, reason in result.failed[:3])
        raise ValueError(f"no case could be measured ({reasons})")
    table.write_cohort_csv(result, output, overwrite=args.overwrite)
    if args.reference:
        summary = table.agreement_summary(result, args.reference)
        table.write_summary_csv(summary, summary_path, overwrite=args.overwrite)
        table.bland_altman_figure(result, args.reference, figure_path, overwrite=args.overwrite)
        for entry in summary:
            if entry["roi"] == "all ROIs":
                print(f"{entry['map']} vs {args.reference} over {entry['n']} ROIs: bias {entry['bias_pp']:+.2f} pp, "
                      f"95 % limits {entry['loa_low_pp']:+.2f}..{entry['loa_high_pp']:+.2f} pp, "
                      f"ICC(A,1) {entry['icc_a1']:.3f}, r {entry['pearson_r']:.3f}")
    cases = len({case for case, _ in result.rows})
    print(f"{len(result.rows)} rows from {cases} case(s) -> {', '.join(map(str, written))}")
    for case, reason in result.failed:
        print(f"skipped {case}: {reason}", file=sys.stderr)
    return 1 if result.failed else 0


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
    else:  # what predict_volume runs with when no batch size is given (inference.calibrate)
        import dataclasses

        from napari_sff.inference import cache_dir, cached_calibrations, default_settings

        device = result["devices"][0]
        result["inference"] = {"device": device, "cache": str(cache_dir()),
                               "default": dataclasses.asdict(default_settings(device)),
                               "calibrated": cached_calibrations(device)}
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
    if "inference" in report:
        tuned = report["inference"]
        for model, entry in tuned["calibrated"].items():
            memory = "channels-last" if entry.get("channels_last") else "contiguous"
            precision = f", {entry['precision']}" if entry.get("precision") else ""
            print(f"{'calibrated':>14}: {model.split()[0]} on {tuned['device']}: batch {entry.get('batch_size')}, "
                  f"{memory}{precision} (measured {entry.get('measured')}; cache {tuned['cache']})")
        if not tuned["calibrated"]:
            default = tuned["default"]
            print(f"{'calibrated':>14}: not yet on {tuned['device']} (the first predict measures; until then batch "
                  f"{default['batch_size']}, {'channels-last' if default['channels_last'] else 'contiguous'})")
    for arch, weights in report["weights"].items():
        state = "present" if weights["present"] else "MISSING"
        if weights.get("error"):
            state = f"unreadable: {weights['error']}"
        elif weights.get("input_spacing_mm"):
            low, high = weights["input_spacing_mm"]
            state += f"; trained on {low:.2f}-{high:.2f} mm pixels"
        print(f"{arch + ' weights':>14}: {weights['path']} ({state})")
    return 0


def anatomy_list(text: str) -> tuple[str, ...]:
    """``--anatomies`` (here and in ``python -m training.gpu_job``) as a tuple; argparse reports a bad name in
    one line."""
    from napari_sff.simulate.case import check_anatomies

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    try:
        check_anatomies(names)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return names


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
    simulate.add_argument("--domain", choices=("default", "randomized"), default="default",
                          help="'randomized': physics, acquisition and anatomy drawn from the ranges in "
                               "docs/simulator_ranges.md (adds the 'random' anatomy); 'default': the narrow protocol")
    simulate.add_argument("--muscle-prior", choices=("simulator", "population"), default="simulator",
                          help="how often muscles are healthy, sarcopenic, myopathic or fatty-atrophied: "
                               "'simulator' (disease-rich, what the shipped models saw) or 'population' (mostly "
                               "healthy); napari_sff.simulate.MUSCLE_PRIORS")
    simulate.add_argument("--anatomies", type=anatomy_list, default=None,
                          help="comma-separated anatomies to rotate through, e.g. thigh,calf,abdomen,random,pelvis "
                               "(default: thigh,calf,abdomen; the randomized domain adds random; the pelvis only "
                               "when named)")
    simulate.add_argument("--tissues", action="store_true",
                          help="also write <case>_tissues.nii.gz + .json (tissue class per voxel) for "
                               "python -m training.evaluate --tissues")
    simulate.set_defaults(run=_simulate)

    predict = sub.add_parser("predict", help="predict SFF maps from T2w NIfTI files or DICOM series (one or a cohort)")
    predict.add_argument("input", nargs="+", help="T2w NIfTI (.nii or .nii.gz), or a DICOM folder, DICOMDIR or file; "
                         "several inputs, a folder of NIfTI files (walked) or a quoted glob make a cohort run")
    predict.add_argument("--series", help="DICOM series to use where the input holds several: SeriesNumber, "
                         "SeriesInstanceUID or SeriesDescription")
    predict.add_argument("-o", "--output", required=True,
                         help="SFF NIfTI to write (float32, input geometry), or a folder: a DICOM series in the "
                              "source study; for a cohort, the folder that mirrors the inputs")
    predict.add_argument("--output-format", choices=("nifti", "dicom"), default="nifti",
                         help="cohort runs: <stem>_sff.nii.gz files or <stem>_sff DICOM series folders")
    predict.add_argument("--dicom-storage", choices=("mr", "parametric-map"), default="mr",
                         help="DICOM output: derived MR images (shown by every PACS) or a Parametric Map")
    predict.add_argument("--new-study", action="store_true",
                         help="DICOM output from a NIfTI input: a new anonymous study (there is no source study)")
    predict.add_argument("--group-volumes", type=int, metavar="N",
                         help="cohort runs: predict N consecutive volumes together, their slices sharing batches "
                              "(default: 1 on CPU, 4 on a GPU)")
    predict.add_argument("--shard", metavar="K/N", help="cohort runs: only the K-th of N shares (e.g. a SLURM array "
                         "task); under torchrun each rank takes its share of that")
    predict.add_argument("--model", choices=("unet", "ddpm"), default="unet")
    predict.add_argument("--weights", help=".safetensors checkpoint (default: the shipped weights)")
    predict.add_argument("--device", default="auto", help="auto (cuda -> mps -> cpu), cpu, cuda, cuda:N or mps")
    predict.add_argument("--ddim-steps", type=int, default=50, help="DDPM only")
    predict.add_argument("--samples", type=int, default=1, help="DDPM samples; >1 also writes <output>_std")
    predict.add_argument("--seed", type=int, default=0)
    predict.add_argument("--batch-size", type=int,
                         help="slices per batch (default: 1 on CPUs, measured fastest there; 8 on GPUs)")
    predict.add_argument("--slice-axis", default="auto", choices=("auto", "0", "1", "2"),
                         help="2D slicing axis in display order (auto: the largest voxel spacing)")
    predict.add_argument("--volume", type=int, help="which volume of a 4D input")
    predict.add_argument("--no-resample", action="store_true",
                         help="predict on the input grid even where its pixel size is outside the model's training range")
    predict.add_argument("--no-mirror", action="store_true",
                         help="U-Net: one pass per slice instead of the mean of the slice's and its left-right mirror "
                              "image's maps (half the time, higher error: see the model card)")
    predict.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                         help="auto: what this device calibrated to (float32 on most CPUs, bfloat16 on CPUs that "
                              "have it in hardware when it was clearly faster and within 0.5 pp of float32; "
                              "float16 on GPUs); float32 for full precision everywhere")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing output (never the input)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(run=_predict)

    dixon_parser = sub.add_parser("dixon", help="signal fat fraction F / (F + W) from Dixon fat and water images")
    dixon_parser.add_argument("fat", help="fat image: NIfTI file or DICOM series folder (or one folder with both)")
    dixon_parser.add_argument("water", nargs="?", help="water image: NIfTI file or DICOM series folder")
    dixon_parser.add_argument("-o", "--output", required=True, help="SFF NIfTI to write (float32, fat geometry)")
    dixon_parser.add_argument("--fat-series", help="DICOM series of the fat image (number, UID or description)")
    dixon_parser.add_argument("--water-series", help="DICOM series of the water image (number, UID or description)")
    dixon_parser.add_argument("--noise-floor", type=float,
                              help="SFF is 0 where F + W is at most this fraction of its 99th percentile "
                                   "(default 0.1)")
    dixon_parser.add_argument("--absolute-floor", action="store_true",
                              help="--noise-floor is in the images' signal units, not a fraction")
    dixon_parser.add_argument("--overwrite", action="store_true", help="replace an existing output (never an input)")
    dixon_parser.set_defaults(run=_dixon)

    roi = sub.add_parser("roi-stats", help="fat-fraction table of a cohort: labels x maps, one row per case, ROI "
                                           "and map, plus the agreement summary against a reference")
    roi.add_argument("--labels", required=True, help="label images, with one '*' where the case id stands, e.g. "
                                                     "'SEG/*_muscle.nii.gz' (quote it)")
    roi.add_argument("--map", action="append", required=True, metavar="NAME=PATTERN",
                     help="a map per case, {case} filled in, e.g. gt='DIXON/{case}_sff.nii.gz'; repeat for each map")
    roi.add_argument("--reference", help="the map the others are compared with (Δ, MAE, summary, Bland-Altman)")
    roi.add_argument("--label-names", help="label names: JSON, CSV (index,name), ITK-SNAP or Slicer colour table")
    roi.add_argument("--exclude-rim", type=int, default=0, metavar="N",
                     help="leave each ROI's border out: its voxels within N voxels in-plane of another label or "
                          "the background (partial volume with the fat beside a muscle); default 0 (whole ROIs)")
    roi.add_argument("-o", "--output", required=True, help="table CSV (the summary and figure go beside it)")
    roi.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    roi.set_defaults(run=_roi_stats)

    info_parser = sub.add_parser("info", help="versions, torch devices, shipped weights")
    info_parser.add_argument("--json", action="store_true")
    info_parser.set_defaults(run=_info)
    return parser


def _show_info_records(show: bool = True) -> None:
    """napari_sff's INFO log records on stderr, one line each (above a progress bar, not inside it); ``show=False``
    (``--quiet``) only warnings, also after an earlier call in the same process showed them."""
    import logging

    from tqdm import tqdm

    class AboveTheBar(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    logger = logging.getLogger("napari_sff")
    if not any(getattr(h, "napari_sff_cli", False) for h in logger.handlers):
        handler = AboveTheBar()
        handler.napari_sff_cli = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if show else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_info_records(not getattr(args, "quiet", False))  # what it is doing (a first calibration), on stderr

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        """What napari-sff assumed (complex voxels read as magnitude, a zero voxel axis, ...), on one line."""
        print(f"napari-sff {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line
            return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as exc:
        # One clear line, no traceback: every error raised by napari-sff says what to do.
        print(f"napari-sff {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
