"""How much of muscle SFF does T2w intensity alone determine on this simulator?

    python -m training.ceiling --cases 12 --seed 777 [--domain randomized] [--normalisation p99 fat] [--protocol]

Inside (eroded) muscle of freshly simulated cases, SFF is fitted as a quadratic function of the normalised,
lightly smoothed T2w intensity, two ways:

* **one mapping for all cases**: what a model that reads muscle brightness alone could do at best;
* **one mapping per case**, fitted to that case's own truth: an oracle that knows each case's calibration
  (echo time, field strength, muscle T2), which no model is told.

Neither is a bound on a CNN, which also sees context (fat, marrow, the bias field's smooth shape); they show
how much muscle error is left by intensity differences the image does not explain: noise, bias field, texture
and, for the shared mapping, the calibration that varies between cases.

``--protocol`` asks whether the scan's protocol, which a DICOM header gives (echo time, repetition time, field
strength), would calibrate the case: one mapping whose coefficients vary linearly with them, fitted on the first
half of the cases and scored on the second, beside the shared mapping fitted and scored the same way. If the
protocol explained the calibration, the model could be told it; what is left is the tissues' own variation.

``--normalisation`` compares input normalisations (:func:`napari_sff.preprocess.normalise_t2w`): one that
calibrates each case (e.g. against its subcutaneous fat, ``fat``) brings the shared mapping closer to the
per-case one than the 99th-percentile rule (``p99``) does.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_sff.preprocess import NORMALISATIONS, normalise_t2w
from napari_sff.simulate import TISSUE_IDS, simulate_cases


def muscle_samples(case, normalisation: str = "p99") -> tuple[np.ndarray, np.ndarray]:
    """(smoothed normalised T2w, true SFF) at muscle voxels one voxel away from any other tissue."""
    smoothed = np.stack([ndimage.gaussian_filter(s, 1.0) for s in normalise_t2w(case.t2w, normalisation)])
    inside = np.stack([ndimage.binary_erosion(t == TISSUE_IDS["muscle"]) for t in case.tissues])
    return smoothed[inside].astype(np.float64), case.sff[inside].astype(np.float64)


def _fit_residuals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    design = _design(x)
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    return design @ coefficients - y


def intensity_ceiling(cases: Sequence, normalisation: str = "p99", *, protocol: bool = False) -> dict:
    """Muscle MAE of the shared and of the per-case quadratic intensity -> SFF fits (see the module doc);
    with ``protocol``, also :func:`protocol_ceiling` on the same samples."""
    samples = [(*muscle_samples(case, normalisation), case.params) for case in cases]
    samples = [(x, y, params) for x, y, params in samples if x.size >= 3]
    if not samples:
        raise ValueError("no muscle voxels in these cases")
    per_case = [_fit_residuals(x, y) for x, y, _ in samples]
    shared = _fit_residuals(np.concatenate([x for x, _, _ in samples]), np.concatenate([y for _, y, _ in samples]))
    voxels = sum(x.size for x, _, _ in samples)
    report = {"cases": len(samples), "muscle_voxels": int(voxels),
              "mae_shared_mapping": float(np.abs(shared).mean()),
              "mae_per_case_mapping": float(np.abs(np.concatenate(per_case)).mean()),
              "sse_shared_mapping": float((shared**2).sum()),
              "sse_per_case_mapping": float(sum((r**2).sum() for r in per_case))}
    if protocol:
        report["protocol"] = protocol_ceiling(samples)
    return report


#: Protocol fields of a case (``SimulatedCase.params``) and their scale: what a DICOM header would tell a model.
PROTOCOL_FIELDS = {"te_ms": 100.0, "tr_ms": 4000.0, "field_strength_t": 3.0}


def _design(x: np.ndarray, protocol: dict | None = None) -> np.ndarray:
    """Quadratic in intensity; with ``protocol``, each coefficient also varies linearly with each field."""
    columns = [np.ones_like(x), x, x * x]
    for name, scale in (PROTOCOL_FIELDS.items() if protocol is not None else ()):
        value = float(protocol[name]) / scale
        columns += [value * c for c in columns[:3]]
    return np.stack(columns, axis=1)


def protocol_ceiling(samples: Sequence[tuple[np.ndarray, np.ndarray, dict]]) -> dict:
    """Held-out muscle MAE of one intensity mapping with and without the protocol: fitted on the first half of the
    cases ``(intensity, sff, protocol)``, scored on the rest (in-sample, extra coefficients could only help)."""
    least = 2 * (len(PROTOCOL_FIELDS) + 2)  # a fitted half of no more protocols than coefficients per power fits
    if len(samples) < least:                # each case on its own: an overfit, not a calibration
        raise ValueError(f"the protocol check needs at least {least} cases (half to fit, half to score); "
                         f"got {len(samples)}: raise --cases")
    fit, held_out = samples[:len(samples) // 2], samples[len(samples) // 2:]
    report = {"cases_fitted": len(fit), "cases_scored": len(held_out), "fields": list(PROTOCOL_FIELDS)}
    for key, known in (("mae_shared_mapping_held_out", False), ("mae_protocol_mapping_held_out", True)):
        design = np.concatenate([_design(x, p if known else None) for x, _, p in fit])
        coefficients = np.linalg.lstsq(design, np.concatenate([y for _, y, _ in fit]), rcond=None)[0]
        errors = [np.abs(_design(x, p if known else None) @ coefficients - y) for x, y, p in held_out]
        report[key] = float(np.concatenate(errors).mean())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ceiling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--seed", type=int, default=777, help="not the training seed: fresh cases")
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--domain", choices=("default", "randomized"), default="default")
    parser.add_argument("--normalisation", nargs="+", choices=sorted(NORMALISATIONS), default=["p99"])
    parser.add_argument("--protocol", action="store_true",
                        help="also: would the protocol (TE, TR, field strength) calibrate the case? (held out)")
    args = parser.parse_args(argv)
    cases = list(simulate_cases(args.cases, seed=args.seed, n_slices=args.slices, return_tissues=True,
                                domain=args.domain))
    report = {name: intensity_ceiling(cases, name, protocol=args.protocol) for name in args.normalisation}
    print(json.dumps({"domain": args.domain, "seed": args.seed, **report}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
