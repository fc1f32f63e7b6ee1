"""Tissue classes of the phantoms: proton density, water-component relaxation at 1.5 and 3 T, fat fraction, and
a TSE-only signal factor (flow void). Each range is drawn once per case; the fat component of every tissue
shares the ``FAT`` row. Sources are given per row; "guess" marks plausible values that were not looked up.

Sources: Gold et al., AJR 2004;183:343 (musculoskeletal T1/T2 at 1.5 and 3 T: muscle, fat, marrow, synovial
fluid); de Bazelaire et al., Radiology 2004;230:652 (3 T vs 1.5 T, fluid); Lu et al., MRM 2004;52:679 (blood
T1); Hu & Kan, Curr Radiol Rep 2013 (adipose PDFF ~0.9-0.95); Karampinos et al., Semin Musculoskelet Radiol
2018 (marrow fat fraction by site and age).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tissue:
    """Ranges drawn per case. ``t1_*`` and ``t2`` are of the water component (ms); ``pd`` is relative to water;
    ``fat_fraction`` is the proton-density fat fraction; ``tse_scale`` multiplies the TSE signal only (flowing
    blood leaves the slice between excitation and refocusing: a dark flow void, while the SFF stays that of
    blood, 0)."""

    pd: tuple[float, float]
    t1_3t: tuple[float, float]
    t1_1p5t: tuple[float, float]
    t2: tuple[float, float]
    fat_fraction: tuple[float, float] = (0.0, 0.0)
    tse_scale: tuple[float, float] = (1.0, 1.0)
    source: str = "guess"


TISSUES: dict[str, Tissue] = {
    "air": Tissue((0.0, 0.0), (1000, 1000), (1000, 1000), (1, 1), source="no protons"),
    "cortical_bone": Tissue((0.0, 0.0), (1000, 1000), (1000, 1000), (1, 1), source="ultra-short T2: no TSE/Dixon signal"),
    "skin": Tissue((0.65, 0.8), (900, 1100), (750, 900), (30, 45), (0.0, 0.05)),
    "adipose": Tissue((0.9, 1.0), (900, 1100), (750, 900), (35, 50), (0.88, 0.95), source="Hu & Kan 2013 (PDFF)"),
    "septum": Tissue((0.8, 0.95), (1000, 1300), (850, 1050), (30, 45), (0.45, 0.85)),
    "muscle": Tissue((0.72, 0.85), (1350, 1450), (1080, 1180), (28, 36), source="Gold 2004"),
    "edema": Tissue((0.8, 0.92), (1500, 1800), (1200, 1450), (45, 75)),
    "yellow_marrow": Tissue((0.9, 1.0), (550, 750), (450, 600), (40, 60), (0.75, 0.95), source="Gold 2004; Karampinos 2018"),
    "red_marrow": Tissue((0.85, 0.95), (650, 900), (550, 750), (40, 60), (0.35, 0.70), source="Karampinos 2018"),
    "fluid": Tissue((0.95, 1.0), (3000, 4200), (2600, 3600), (700, 2000), source="Gold 2004 (synovial); de Bazelaire 2004"),
    "mass": Tissue((0.8, 0.92), (1200, 1700), (1000, 1400), (70, 140), (0.0, 0.04)),
    "necrosis": Tissue((0.9, 1.0), (2000, 3000), (1700, 2500), (250, 700)),
    "artery": Tissue((0.82, 0.9), (1600, 1700), (1400, 1480), (150, 250), tse_scale=(0.02, 0.15), source="Lu 2004 (T1)"),
    "vein": Tissue((0.82, 0.9), (1600, 1700), (1400, 1480), (80, 200), tse_scale=(0.4, 1.0), source="Lu 2004 (T1)"),
    "nerve": Tissue((0.8, 0.9), (1300, 1500), (1050, 1200), (55, 80), (0.15, 0.35)),
    "bowel": Tissue((0.75, 0.9), (1100, 1400), (900, 1150), (50, 120), (0.0, 0.08)),
}
TISSUE_IDS: dict[str, int] = {name: index for index, name in enumerate(TISSUES)}

#: The fat (methylene) component shared by all tissues: T1 (Gold 2004: 343 ms at 1.5 T, 371 ms at 3 T) and an
#: apparent TSE T2 longer than its spin-echo T2 because the echo train breaks up J-coupling (guess range).
FAT = Tissue((1.0, 1.0), (350, 400), (320, 370), (100, 160), (1.0, 1.0), source="Gold 2004 (T1); T2 guess")

#: Per-muscle fat fraction by grade (guess, after the Mercuri visual grades: normal, mild, moderate, severe).
MUSCLE_FAT_BY_GRADE: dict[str, tuple[float, float]] = {
    "normal": (0.01, 0.06), "mild": (0.06, 0.15), "moderate": (0.15, 0.35), "severe": (0.35, 0.75),
}
#: How a case's muscles are graded (guess): most cases healthy, some with a patchy myopathy.
CASE_CONDITIONS: dict[str, tuple[float, dict[str, float]]] = {
    "healthy": (0.5, {"normal": 0.9, "mild": 0.1}),
    "aged": (0.25, {"normal": 0.4, "mild": 0.45, "moderate": 0.15}),
    "myopathy": (0.25, {"normal": 0.25, "mild": 0.25, "moderate": 0.25, "severe": 0.25}),
}
#: Within-muscle patterns of fatty infiltration.
INFILTRATION_PATTERNS = ("uniform", "streaks", "rim", "patches")
#: Voxels whose mean proton density is below this hold no measurable signal: SFF 0 there (guess).
SIGNAL_PD_THRESHOLD = 0.2
