"""The tissue table (relaxation, proton density, fat fraction per tissue, with sources) and the constants
that set a case's composition and field of view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANATOMIES = ("thigh", "calf", "abdomen")  # the default domain's rotation (``simulate_cases``)
RANDOM_ANATOMY = "random"  # random muscles and blobs of random tissues in a skin-fat envelope (lesions.py)
# Simulated on request only (``simulate_case`` / ``simulate_cases(anatomies=...)``): outside the default
# rotations, so that every seed's earlier data stays as it was.
EXTRA_ANATOMIES = ("pelvis",)
# Every anatomy; the position fixes an anatomy's random streams, so new ones are appended, never inserted.
ALL_ANATOMIES = (*ANATOMIES, RANDOM_ANATOMY, *EXTRA_ANATOMIES)


@dataclass(frozen=True)
class Tissue:
    """Composition and water relaxation of one tissue class; ranges are drawn once per case.

    ``t1_ms`` is the 3 T value of the water component (1.5 T uses ``T1_SCALE_1P5T`` times it); ``t2_ms`` is
    taken as field-independent. The fat component of every tissue uses the ``fat_protons`` row.
    """

    proton_density: tuple[float, float]  # relative to pure water
    t1_ms: float
    t2_ms: float
    fat_fraction: tuple[float, float] = (0.0, 0.0)  # proton-density fat fraction
    washout: float = 0.0  # fraction of TSE signal lost to through-plane flow (flow void)


# Sources: de Bazelaire et al., Radiology 2004;230:652 (abdominal tissues, 3 T vs 1.5 T); Gold et al., AJR
# 2004;183:343 (musculoskeletal tissues at 3 T: muscle T1 ~1420 ms, T2 ~32 ms; marrow; synovial fluid);
# Lu et al., MRM 2004;52:679 (blood T1 at 3 T ~1650 ms); Henkelman et al., Radiology 1992 (J-coupling keeps
# fat bright on TSE: apparent T2 well above the spin-echo value). PDFF ranges: Hu & Kan, Curr Radiol Rep 2013
# (adipose ~0.9-0.95); Karampinos et al. (vertebral marrow 0.27-0.6, rising with age); Tang et al., Radiology
# 2013 (liver steatosis grades ~0.064/0.174/0.221). Rows marked "approx." are plausible guesses, not measured.
TISSUES: dict[str, Tissue] = {
    "air": Tissue((0.0, 0.0), 1000.0, 1.0),
    "skin": Tissue((0.65, 0.8), 1000.0, 40.0, (0.0, 0.1)),  # approx.
    "subcutaneous_fat": Tissue((0.9, 1.0), 1000.0, 40.0, (0.90, 0.95)),  # water T1/T2 approx.
    "visceral_fat": Tissue((0.88, 1.0), 1000.0, 40.0, (0.85, 0.95)),  # water T1/T2 approx.
    "intermuscular_fat": Tissue((0.85, 0.95), 1100.0, 35.0, (0.70, 0.90)),  # fascia + fat, approx.
    "muscle": Tissue((0.75, 0.85), 1420.0, 32.0, (0.02, 0.08)),  # Gold 2004; healthy thigh PDFF
    "edema": Tissue((0.8, 0.9), 1600.0, 60.0, (0.0, 0.02)),  # inflamed muscle T2 ~40-70 ms, approx.
    "cortical_bone": Tissue((0.0, 0.0), 1000.0, 1.0),  # ultra-short T2: no TSE or Dixon signal
    "marrow_long_bone": Tissue((0.9, 1.0), 600.0, 50.0, (0.60, 0.95)),  # yellow marrow; Gold 2004
    "marrow_vertebral": Tissue((0.8, 0.9), 590.0, 49.0, (0.27, 0.60)),  # de Bazelaire 2004
    "intervertebral_disc": Tissue((0.8, 0.9), 1200.0, 90.0),  # nucleus pulposus, approx.
    "liver": Tissue((0.7, 0.8), 812.0, 42.0, (0.01, 0.05)),  # de Bazelaire 2004; normal liver PDFF
    "spleen": Tissue((0.8, 0.85), 1328.0, 61.0),  # de Bazelaire 2004
    "kidney": Tissue((0.85, 0.9), 1142.0, 76.0),  # de Bazelaire 2004 (cortex)
    "bowel": Tissue((0.75, 0.85), 1200.0, 80.0),  # wall and mixed contents, approx.
    "fluid": Tissue((0.95, 1.0), 3800.0, 1500.0),  # CSF / cysts / synovial fluid; Gold 2004, approx.
    "flowing_blood": Tissue((0.85, 0.9), 1650.0, 150.0, washout=0.95),  # dark flow void; Lu 2004
    "slow_blood": Tissue((0.85, 0.9), 1650.0, 150.0),  # slow venous flow stays bright on T2w
    # Not painted: relaxation of the fat (methylene) protons shared by every tissue. T1 ~380 ms at 3 T
    # (de Bazelaire 2004); apparent TSE T2 ~130 ms because J-coupling is broken up by the echo train.
    "fat_protons": Tissue((1.0, 1.0), 380.0, 130.0, (1.0, 1.0)),
}
TISSUE_IDS: dict[str, int] = {name: index for index, name in enumerate(TISSUES)}
MIXED_TISSUE = 255  # `tissues` value where no tissue fills at least 3 of the 4 sub-voxels
T1_SCALE_1P5T = 0.8  # T1 is about 20 % shorter at 1.5 T (de Bazelaire 2004); T2 is kept

# Per-muscle fat fraction by case condition (thigh PDFF: healthy 0.02-0.08; myopathy up to 0.6+).
MUSCLE_FAT_BY_CONDITION = {
    "healthy": (0.02, 0.08),
    "sarcopenic": (0.10, 0.30),
    "myopathic": (0.15, 0.60),
}
CONDITION_PROBABILITY = {"healthy": 0.55, "sarcopenic": 0.2, "myopathic": 0.25}


@dataclass(frozen=True)
class MusclePrior:
    """How often a case's muscles are healthy, sarcopenic or myopathic and, in the randomized domain, how often
    no fatty atrophy pattern is added (None: the table's draw, every pattern of ``atrophy_pattern`` alike).

    Why a choice: where T2w leaves a muscle's fat ambiguous, a network trained with an L1 loss answers towards
    what its training cases usually held (issue #11: healthy muscle read +4 pp too fatty on every held-out set).
    """

    conditions: dict[str, float]
    no_atrophy: float | None
    source: str


#: ``simulate_case(..., muscle_prior=...)``. "simulator": the prior every shipped model was trained with, rich in
#: disease (mean muscle SFF 0.245 on the randomized test split); "population": mostly healthy, as in a population
#: cohort (sarcopenia prevalence about 10 % in adults: Shafiee et al., J Diabetes Metab Disord 2017; myopathy and
#: fatty atrophy patterns rarer still). Both are guesses around those figures.
MUSCLE_PRIORS: dict[str, MusclePrior] = {
    "simulator": MusclePrior(CONDITION_PROBABILITY, None, "guess: a disease-rich mix"),
    "population": MusclePrior({"healthy": 0.8, "sarcopenic": 0.12, "myopathic": 0.08}, 0.6,
                              "guess around Shafiee et al. 2017 (sarcopenia ~10 %)"),
}
DEFAULT_MUSCLE_PRIOR = "simulator"


def get_muscle_prior(name: str) -> MusclePrior:
    """The named prior; a clear error naming the valid ones otherwise."""
    if name not in MUSCLE_PRIORS:
        raise ValueError(f"unknown muscle prior {name!r}; valid priors: {', '.join(MUSCLE_PRIORS)}")
    return MUSCLE_PRIORS[name]
HEALTHY_PARASPINAL_FAT = (0.08, 0.21)  # adult paraspinal PDFF is higher than limb muscle
LIVER_STEATOSIS = (0.06, 0.25)
LIVER_STEATOSIS_PROBABILITY = 0.4

# Field of view (mm) by anatomy and number of limbs: at 256 px the in-plane spacing stays within 1-2 mm.
FOV_MM = {
    ("thigh", 1): (256.0, 330.0),
    ("thigh", 2): (360.0, 500.0),
    ("calf", 1): (256.0, 300.0),
    ("calf", 2): (300.0, 420.0),
    ("abdomen", 1): (360.0, 500.0),
    ("pelvis", 1): (380.0, 500.0),
    (RANDOM_ANATOMY, 1): (256.0, 450.0),
}
SUBVOXELS = 2  # in-plane oversampling factor for partial volume
SIGNAL_PD_THRESHOLD = 0.3  # mean PD below which a voxel is mostly air/cortex: SFF is set to 0 there
GAMMA_HZ_PER_T = 42.577e6  # proton gyromagnetic ratio / 2 pi
_FLOAT = np.float32
