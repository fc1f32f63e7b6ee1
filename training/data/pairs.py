"""Paired scans of one's own: find them, bring the reference onto the T2w grid, and say how well they line up.

A folder of pairs holds, per case, ``<case>_t2w`` plus either ``<case>_sff`` or ``<case>_fat`` + ``<case>_water``
(NIfTI files, or DICOM series folders of those names). The SFF -- measured, or made from fat and water by
:func:`napari_sff.dixon.dixon_volume` -- may lie on another grid (a Dixon series has its own matrix, slices and
field of view): it is resampled onto the T2w grid by world coordinates (affines), never matched by array shape,
and is NaN where it does not reach. Each pair gets its *coverage* (fraction of the T2w body the SFF reaches) and an
*alignment score* (normalised mutual information of T2w and SFF inside the body), and is checked against shifted
copies of itself: a pair that fits better after a shift of a few voxels, or scores far below the cohort, is flagged
as a possible motion or registration problem (``--register`` aligns pairs rigidly first).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_sff import io
from napari_sff.inference import choose_slice_axis
from napari_sff.preprocess import body_mask, normalise_t2w
from napari_sff.roi import resample_to_grid, volume_to_world

ROLES = ("t2w", "sff", "fat", "water")
#: Pairs whose SFF reaches less of the T2w body than this are refused.
MIN_COVERAGE = 0.5


class PairError(ValueError):
    """A pair that cannot be used for training; the message names the case and what to do."""


@dataclass(frozen=True)
class Pair:
    """One case's files: a T2w and either an SFF or a fat + water pair (each a NIfTI file or a DICOM folder)."""

    case: str
    t2w: Path
    sff: Path | None = None
    fat: Path | None = None
    water: Path | None = None


@dataclass
class AlignedPair:
    """A T2w volume and its SFF on the T2w grid (NaN where the SFF does not reach), with quality measures."""

    t2w: io.Volume
    sff: np.ndarray
    coverage: float
    alignment: float
    shift_note: str | None = None
    registered: bool = False


def _role_of(entry: Path) -> tuple[str, str] | None:
    """(case, role) of ``<case>_<role>.nii[.gz]`` or a ``<case>_<role>`` folder; None for anything else."""
    if entry.is_file() and io.is_nifti_path(entry):
        stem = io.nifti_stem(entry)
    elif entry.is_dir():
        stem = entry.name
    else:
        return None
    case, _, role = stem.rpartition("_")
    role = role.lower()
    return (case, role) if case and role in ROLES else None


def find_pairs(data_dir: str | os.PathLike) -> list[Pair]:
    """Every case of ``data_dir`` with a T2w and an SFF (or fat + water), sorted by case."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such folder of pairs; check the path")
    found: dict[str, dict[str, Path]] = {}
    for entry in sorted(data_dir.iterdir()):
        role = _role_of(entry)
        if role is not None:
            found.setdefault(role[0], {}).setdefault(role[1], entry)
    pairs = []
    for case, files in sorted(found.items()):
        if "t2w" not in files:
            continue
        if "sff" in files:
            pairs.append(Pair(case, files["t2w"], sff=files["sff"]))
        elif "fat" in files and "water" in files:
            pairs.append(Pair(case, files["t2w"], fat=files["fat"], water=files["water"]))
    if not pairs:
        raise FileNotFoundError(f"{data_dir}: no <case>_t2w with <case>_sff (or <case>_fat + <case>_water) found "
                                "(NIfTI files or DICOM folders)")
    return pairs


def subjects_of(cases: Sequence[str], subject_regex: str | None) -> dict[str, str]:
    """case -> subject: the regex's ``subject`` group (or its first group, or the whole match); the case itself
    without a regex. Files or visits of one subject then share a split."""
    if subject_regex is None:
        return {case: case for case in cases}
    pattern = re.compile(subject_regex)
    subjects = {}
    for case in cases:
        found = pattern.search(case)
        if found is None:
            raise ValueError(f"--subject-regex {subject_regex!r} does not match case {case!r}; fix the pattern")
        groups = found.groupdict()
        subjects[case] = groups.get("subject") or (found.group(1) if pattern.groups else found.group(0))
    return subjects


def split_subjects(subjects: Mapping[str, str], *, val_fraction: float, test_fraction: float,
                   seed: int) -> dict[str, str]:
    """case -> split with every subject's cases in one split; shuffled by ``seed``; each split gets at least one
    subject when there are three."""
    names = sorted(set(subjects.values()))
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = max(1 if len(names) >= 3 else 0, round(test_fraction * len(names)))
    n_val = max(1 if len(names) >= 3 else 0, round(val_fraction * len(names)))
    by_subject = {}
    for rank, index in enumerate(order):
        by_subject[names[index]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return {case: by_subject[subject] for case, subject in subjects.items()}


def _sff_volume(pair: Pair) -> io.Volume:
    if pair.sff is not None:
        volume = io.read_volume(pair.sff)
        return io.Volume(io.sff_as_fraction(volume.array), volume.affine, volume.source)
    from napari_sff.dixon import dixon_volume

    return dixon_volume(io.read_volume(pair.fat), io.read_volume(pair.water))


def sff_on_t2w_grid(sff: io.Volume, t2w: io.Volume) -> np.ndarray:
    """The SFF looked up at every T2w voxel by world coordinates; NaN where the SFF grid does not reach."""
    to_sff = np.linalg.solve(volume_to_world(sff), volume_to_world(t2w))
    if sff.array.shape == t2w.array.shape and np.allclose(to_sff, np.eye(4), atol=1e-6):
        return np.asarray(sff.array, np.float32)
    return resample_to_grid(np.asarray(sff.array, np.float32), to_sff, t2w.array.shape, labels=False,
                            outside=np.nan)


def body_of(t2w: io.Volume) -> np.ndarray:
    """Body voxels of a T2w volume, by the shared per-slice threshold along its slice axis."""
    axis = choose_slice_axis(t2w.spacing)
    return np.moveaxis(body_mask(np.moveaxis(np.asarray(t2w.array, np.float32), axis, 0)), 0, axis)


def _nmi(x: np.ndarray, y: np.ndarray, bins: int = 32) -> float:
    """Normalised mutual information (H(x) + H(y)) / H(x, y), from 1 (independent) to 2 (one determines the other)."""
    joint, _, _ = np.histogram2d(x, y, bins=bins)
    p = joint / max(joint.sum(), 1)
    px, py = p.sum(axis=1), p.sum(axis=0)

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    joint_entropy = entropy(p.ravel())
    return (entropy(px) + entropy(py)) / joint_entropy if joint_entropy > 0 else float("nan")


#: In-plane shifts (voxels) tried against the unshifted pair, and by how much one must win to flag the pair.
SHIFTS = (3, 6)
SHIFT_GAIN = 0.02


def quality(t2w: io.Volume, sff: np.ndarray) -> tuple[float, float, str | None]:
    """(coverage, alignment score, shift note) of an SFF on the T2w grid.

    The alignment score is the normalised mutual information of the normalised T2w and the SFF inside the covered
    body (T2w contrast is not monotonic in fat: fluid and edema are bright but fat-free, so a correlation would
    not do). Because its level depends on anatomy, the pair is also compared with itself: if the SFF shifted by a
    few voxels in-plane matches the T2w clearly better (by :data:`SHIFT_GAIN`), the note says so.
    """
    body = body_of(t2w)
    if not body.any():
        return 0.0, float("nan"), None
    covered = body & np.isfinite(sff)
    coverage = float(covered.sum() / body.sum())
    axis = choose_slice_axis(t2w.spacing)
    image = np.moveaxis(normalise_t2w(np.moveaxis(np.asarray(t2w.array, np.float32), axis, 0)), 0, axis)
    if covered.sum() < 64:
        return coverage, float("nan"), None
    score = _nmi(image[covered], sff[covered])
    note = None
    for plane_axis in [a for a in range(3) if a != axis]:
        for shift in (*SHIFTS, *(-s for s in SHIFTS)):
            moved = np.roll(sff, shift, axis=plane_axis)
            valid = covered & np.isfinite(moved)
            edge = [slice(None)] * 3  # np.roll wraps around: leave out the wrapped rows
            edge[plane_axis] = slice(0, shift) if shift > 0 else slice(shift, None)
            valid[tuple(edge)] = False
            if valid.sum() >= 64:
                shifted = _nmi(image[valid], moved[valid])
                if shifted > score * (1 + SHIFT_GAIN) and (note is None or shifted > note[0]):
                    note = (shifted, f"the SFF matches the T2w better shifted by {shift} voxels along axis "
                                     f"{plane_axis} (NMI {shifted:.3f} vs {score:.3f})")
    return coverage, score, None if note is None else note[1]


def load_pair(pair: Pair, *, register: bool = False, min_coverage: float = MIN_COVERAGE) -> AlignedPair:
    """Read a pair, bring the SFF onto the T2w grid, measure it; refuse (PairError) a pair that barely overlaps.

    With ``register`` the SFF is first aligned to the T2w by a rigid registration (:func:`register_rigid`).
    """
    try:
        t2w = io.read_volume(pair.t2w)
        sff = _sff_volume(pair)
    except (ValueError, OSError) as exc:
        raise PairError(f"case {pair.case}: {str(exc).splitlines()[0]}") from exc
    for name, volume in (("T2w", t2w), ("SFF", sff)):
        if volume.array.ndim != 3:
            raise PairError(f"case {pair.case}: the {name} is {volume.array.ndim}D; give one 3D volume per file")
    on_grid = register_rigid(t2w, sff) if register else sff_on_t2w_grid(sff, t2w)
    coverage, alignment, shift_note = quality(t2w, on_grid)
    if coverage < min_coverage:
        raise PairError(f"case {pair.case}: the SFF covers only {100 * coverage:.0f} % of the T2w body (need "
                        f"{100 * min_coverage:.0f} %); check that both images are of the same region and visit")
    return AlignedPair(t2w, np.clip(on_grid, 0, 1, where=np.isfinite(on_grid), out=on_grid), coverage, alignment,
                       shift_note, registered=register)


def flag_misaligned(scores: Mapping[str, float], shift_notes: Mapping[str, str | None] | None = None,
                    ) -> dict[str, str]:
    """case -> reason, for pairs that may suffer from motion or misregistration: a shift that fits better (see
    :func:`quality`), or (with >= 5 cases) an alignment score more than 3 robust SDs (1.4826 MAD) below the
    cohort's median."""
    flags = {case: note for case, note in (shift_notes or {}).items() if note}
    finite = {case: score for case, score in scores.items() if np.isfinite(score)}
    values = np.array(list(finite.values()))
    if values.size >= 5:
        median = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - median)))
        for case, score in finite.items():
            if spread > 0 and score < median - 3 * spread:
                flags.setdefault(case, f"alignment score {score:.3f} far below the cohort's median {median:.3f}")
    return flags


def register_rigid(t2w: io.Volume, sff: io.Volume) -> np.ndarray:
    """The SFF rigidly registered to the T2w (SimpleITK, Mattes mutual information), on the T2w grid (NaN outside).

    Both images are placed by their affines in one physical frame, so the registration starts from the scanner's
    own alignment and only corrects what moved (motion between the series, a shifted table).
    """
    import SimpleITK as sitk

    def to_sitk(volume: io.Volume, array: np.ndarray) -> sitk.Image:
        # SimpleITK indexes (x, y, z) = numpy axes reversed; direction and origin from the display-order affine.
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0)), dtype=np.float32))
        spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
        image.SetSpacing([float(s) for s in spacing])
        image.SetDirection((volume.affine[:3, :3] / spacing).flatten().tolist())
        image.SetOrigin([float(v) for v in volume.affine[:3, 3]])
        return image

    fixed = to_sitk(t2w, np.asarray(t2w.array, np.float32))
    moving = to_sitk(sff, np.asarray(sff.array, np.float32))
    initial = sitk.Euler3DTransform()  # identity: the scanner's placement, rotating about the T2w's centre
    initial.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.2, seed=0)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=100)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1, 0])
    method.SetInitialTransform(initial, inPlace=False)
    transform = method.Execute(fixed, moving)
    resampled = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    return np.transpose(sitk.GetArrayFromImage(resampled), (2, 1, 0)).astype(np.float32)
