"""Paired T2-weighted / signal-fat-fraction (SFF) phantoms for training and testing T2w -> SFF models.

Parts: :mod:`.tissues` (the tissue table), :mod:`.geometry` (smooth randomness, grid, blobs, the scene),
:mod:`.muscles` (muscle composition), :mod:`.limbs`, :mod:`.abdomen` and :mod:`.pelvis` (anatomy; the pelvis only on
request), :mod:`.acquisition`
(physics and acquisition), :mod:`.case` (``simulate_case`` / ``simulate_cases``); for the randomized domain
(``domain="randomized"``, issue #11) :mod:`.randomization` (the one table of ranges, ``docs/simulator_ranges.md``,
and the draws), :mod:`.artifacts` (echo-train blur, Gibbs, partial Fourier, ghosts in k-space; noise, curve)
and :mod:`.lesions` (atrophy patterns, lesions and voids anywhere, the ``random`` anatomy).

Why a simulator: paired T2w/Dixon data are scarce, and a model that maps T2w to SFF has to learn anatomical
context (fluid, edema and kidney are bright but hold no fat; marrow is intermediate yet fatty; vessels are
dark), not a per-pixel intensity lookup. So every case gets its own anatomy, composition and acquisition.

How a case is made:

1. A tissue map and a muscle-id map are painted at twice the output in-plane resolution: randomly perturbed
   ellipses ("blobs") whose centres, radii and boundary wobble drift smoothly with the slice position, all
   seen through one smooth random warp of the plane; the muscle compartment is split into muscles by a
   weighted Voronoi partition with thin fat septa between them.
2. Each tissue is a water/fat mixture: proton density PD and fat fraction f are drawn per case from
   ``TISSUES``; per muscle the fat fraction follows the case's condition (healthy, sarcopenic, myopathic)
   and is marbled by smooth random fields.
3. T2w TSE signal per component: ``S = PD * (1 - exp(-TR/T1)) * exp(-TE/T2)``, water and fat summed.
   The ground-truth SFF is what a two-point Dixon would report from proton densities,
   ``SFF = sum(PD * f) / sum(PD)`` (no T1/T2 weighting, i.e. close to PDFF), and 0 where there is hardly any
   signal (mean PD below ``SIGNAL_PD_THRESHOLD``: air, cortical bone).
4. The T2w fat signal is displaced along the readout by the fat-water chemical shift, sub-voxels are averaged
   2x2 (partial volume), then the T2w image gets a smooth multiplicative bias field, Rician noise, an
   arbitrary scanner scale and integer storage. The SFF map stays noise-free and unshifted.
5. ``domain="randomized"`` instead draws the protocol, tissue relaxation / PD and pixel spacing from
   ``randomization.RANGES`` (own random streams: the default domain stays bit-identical), adds atrophy,
   lesions and voids, renders the signal per T2 class and applies the k-space effects before bias, noise,
   a monotone intensity curve and storage.

Axis order is display order: (slice inferior->superior, row anterior->posterior, column patient's right ->
patient's left). Internally x grows with the column (towards the patient's left) and y with the row
(towards posterior), both in mm.
"""

from __future__ import annotations

from napari_sff.simulate.abdomen import ABDOMEN_LABELS, ABDOMINAL_WALL
from napari_sff.simulate.case import SimulatedCase, simulate_case, simulate_cases
from napari_sff.simulate.geometry import N_HARMONICS, Window
from napari_sff.simulate.limbs import CALF, LIMB_LAYOUTS, THIGH
from napari_sff.simulate.pelvis import PELVIC_RING, PELVIS_LABELS
from napari_sff.simulate.randomization import DOMAINS, RANGES
from napari_sff.simulate.tissues import (
    ALL_ANATOMIES,
    ANATOMIES,
    CONDITION_PROBABILITY,
    EXTRA_ANATOMIES,
    FOV_MM,
    GAMMA_HZ_PER_T,
    HEALTHY_PARASPINAL_FAT,
    LIVER_STEATOSIS,
    LIVER_STEATOSIS_PROBABILITY,
    MIXED_TISSUE,
    MUSCLE_FAT_BY_CONDITION,
    MUSCLE_PRIORS,
    RANDOM_ANATOMY,
    SIGNAL_PD_THRESHOLD,
    SUBVOXELS,
    T1_SCALE_1P5T,
    TISSUE_IDS,
    TISSUES,
    MusclePrior,
    Tissue,
)

__all__ = [
    "ABDOMEN_LABELS", "ABDOMINAL_WALL", "ALL_ANATOMIES", "ANATOMIES", "CALF", "CONDITION_PROBABILITY", "DOMAINS",
    "EXTRA_ANATOMIES", "FOV_MM", "GAMMA_HZ_PER_T", "HEALTHY_PARASPINAL_FAT", "LIMB_LAYOUTS", "LIVER_STEATOSIS",
    "LIVER_STEATOSIS_PROBABILITY", "MIXED_TISSUE", "MUSCLE_FAT_BY_CONDITION", "MUSCLE_PRIORS", "MusclePrior",
    "N_HARMONICS", "PELVIC_RING", "PELVIS_LABELS",
    "RANDOM_ANATOMY", "RANGES", "SIGNAL_PD_THRESHOLD", "SUBVOXELS", "SimulatedCase", "T1_SCALE_1P5T", "THIGH", "TISSUES",
    "TISSUE_IDS", "Tissue", "Window", "simulate_case", "simulate_cases",
]
