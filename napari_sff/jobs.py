"""One prediction job, file in -> files out, in three steps the single-file CLI and a cohort run share.

:func:`read_job` reads a T2w (NIfTI, or a DICOM series) and picks one volume of a 4D input, :func:`predict_job`
runs :func:`napari_sff.inference.predict_volume` on it, :func:`write_job` writes the SFF (and the DDPM SD map)
as NIfTI or, for an output without a NIfTI suffix, as a DICOM series in the source study. :func:`check_outputs`
refuses a bad output before a long prediction. The cohort runner overlaps the three steps in threads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from napari_sff import io
from napari_sff.inference import Prediction, predict_volume, predict_volumes
from napari_sff.preprocess import input_kind_warning


@dataclass(frozen=True)
class PredictSettings:
    """What the user chose for every file of a run (the CLI's predict options)."""

    arch: str = "unet"
    weights: str | None = None
    device: str = "auto"
    ddim_steps: int = 50
    samples: int = 1
    seed: int = 0
    batch_size: int | None = None  # None: inference.default_batch_size of the device
    slice_axis: int | str = "auto"
    resample: bool = True
    mirror: bool = True  # U-Net: average with the left-right mirrored slices (napari_sff.inference.predict_slices)
    precision: str | None = None  # None: the device's calibrated or default precision (RunSettings.precision)
    series: str | None = None  # DICOM series of an input holding several
    volume: int | None = None  # which volume of a 4D input
    dicom_storage: str = "mr"
    new_study: bool = False

    @property
    def writes_std(self) -> bool:
        return self.arch == "ddpm" and self.samples > 1


@dataclass
class Job:
    """A read input: the 3D array to predict and the volume whose geometry (and DICOM study) the maps keep."""

    array: object
    geometry: io.Volume


def is_dicom_output(output: str | os.PathLike) -> bool:
    """Outputs without a NIfTI suffix are DICOM series folders."""
    return not io.is_nifti_path(output)


def std_output(output: str | os.PathLike) -> Path:
    """Where the DDPM SD map goes beside ``output``: ``<stem>_std.nii.gz`` or the folder ``<folder>_sd``."""
    output = Path(output)
    if is_dicom_output(output):
        return output.with_name(f"{output.name}_sd")
    return output.with_name(f"{io.nifti_stem(output)}_std.nii.gz")


def outputs_of(output: str | os.PathLike, settings: PredictSettings) -> list[Path]:
    return [Path(output), *([std_output(output)] if settings.writes_std else [])]


def check_outputs(input_path: str | os.PathLike, output: str | os.PathLike, settings: PredictSettings, *,
                  overwrite: bool, source: io.Volume | None = None) -> None:
    """Refuse (ValueError, one line) outputs that exist, are the input, or cannot hold the result -- before a DDPM
    run takes minutes to reach the write. ``source`` (the read T2w) lets a DICOM output check its study."""
    targets = outputs_of(output, settings)
    io.refuse_outputs(targets, inputs=[input_path], overwrite=overwrite)
    for target in targets:
        if source is not None and is_dicom_output(target):
            io.check_dicom_output(source, target, new_study=settings.new_study, overwrite=overwrite)


def read_job(path: str | os.PathLike, settings: PredictSettings) -> Job:
    """Read the T2w and pick the volume to predict (``settings.volume`` of a 4D series)."""
    volume = io.read_volume(path, series=settings.series)
    array = volume.array
    if array.ndim == 4:
        if settings.volume is None:
            raise ValueError(f"{path} is 4D ({array.shape[0]} volumes); pick one with --volume N")
        array = array[settings.volume]
        # One volume of a series: the file's 4D layout cannot be restored, its study and input path can.
        return Job(array, io.Volume(array, volume.affine, {k: v for k, v in volume.source.items()
                                                           if k in ("path", "dicom")}))
    return Job(array, volume)


def _warn_if_not_t2w(job: Job) -> None:
    problem = input_kind_warning(job.array)
    if problem:
        warnings.warn(f"{job.geometry.source.get('path', 'input')}: {problem}; the SFF map will be meaningless",
                      UserWarning, stacklevel=3)


def predict_job(job: Job, settings: PredictSettings, *,
                progress: Callable[[int, int], None] | None = None) -> Prediction:
    """The model on the job's array; a warning first when the input looks like labels or an SFF map."""
    _warn_if_not_t2w(job)
    prediction = predict_volume(
        job.array, job.geometry.spacing, settings.arch, weights=settings.weights, device=settings.device,
        slice_axis=settings.slice_axis, batch_size=settings.batch_size, ddim_steps=settings.ddim_steps,
        samples=settings.samples, seed=settings.seed, progress=progress, resample=settings.resample,
        mirror=settings.mirror, precision=settings.precision,
    )
    _warn_if_outside(job, prediction)
    return prediction


def _warn_if_outside(job: Job, prediction: Prediction) -> None:
    if prediction.out_of_distribution:
        warnings.warn(f"{job.geometry.source.get('path', 'input')}: {prediction.out_of_distribution}",
                      UserWarning, stacklevel=3)


def predict_jobs(jobs: list[Job], settings: PredictSettings) -> list[Prediction]:
    """Several jobs in one go, their slices sharing batches (:func:`napari_sff.inference.predict_volumes`)."""
    for job in jobs:
        _warn_if_not_t2w(job)
    predictions = predict_volumes(
        [(job.array, job.geometry.spacing) for job in jobs], settings.arch, weights=settings.weights,
        device=settings.device, slice_axis=settings.slice_axis, batch_size=settings.batch_size,
        ddim_steps=settings.ddim_steps, samples=settings.samples, seed=settings.seed, resample=settings.resample,
        mirror=settings.mirror, precision=settings.precision,
    )
    for job, prediction in zip(jobs, predictions, strict=True):
        _warn_if_outside(job, prediction)
    return predictions


def default_group(device: str) -> int:
    """Volumes predicted together by a cohort run: 1 on CPUs (on 2 cores batch 1 was fastest: see
    benchmarks/bench_inference.py), 4 on GPUs so that short volumes still fill a batch (not measured here: no GPU
    was available; pass --group-volumes after measuring with benchmarks/bench_cohort.py)."""
    from napari_sff.inference import resolve_device

    return 4 if resolve_device(device).type == "cuda" else 1


def write_job(job: Job, prediction: Prediction, output: str | os.PathLike, settings: PredictSettings, *,
              overwrite: bool = False) -> list[Path]:
    """Write the SFF map (and the SD map) on the input's grid: NIfTI, or a DICOM series in the source study; then
    the JSON sidecar that says how it was made (:mod:`napari_sff.provenance`; returned last)."""
    from napari_sff import provenance

    maps = [("sff", prediction.sff)]
    if settings.writes_std and prediction.std is not None:
        maps.append(("sd", prediction.std))
    written = []
    for (kind, values), target in zip(maps, outputs_of(output, settings), strict=False):
        volume = job.geometry.like(values.astype("float32"))
        if is_dicom_output(target):
            written.append(io.write_dicom_series(
                volume, target, kind=kind, model=settings.arch, weights=settings.weights or "shipped",
                storage=settings.dicom_storage, new_study=settings.new_study, overwrite=overwrite))
        else:
            written.append(io.write_nifti(volume, target, overwrite=overwrite))
    info = provenance.describe(prediction, weights=settings.weights, ddim_steps=settings.ddim_steps,
                               samples=settings.samples, seed=settings.seed, outputs=written)
    return [*written, provenance.write_sidecar(written[0], info)]
