"""The randomized domain's ranges: ONE table (``RANGES``) of every drawn quantity with its unit and source, the
draws made from it, and the markdown table in ``docs/simulator_ranges.md`` generated from it.

Why: a model trained on one narrow protocol learns the simulator, not T2w contrast (issue #11). The
randomized domain (``simulate_case(..., domain="randomized")``) widens physics, acquisition and anatomy the way
SynthSeg / SynthSR do, while keeping the task solvable: the tissue table's fat fractions are kept, so
subcutaneous fat and marrow stay nearly pure fat and fluid holds none, and the SFF ground truth is still the
noise-free proton-density fat fraction.

A source is a paper or the word "guess"; ranges written in issue #11 without a citation are guesses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DOMAINS = ("default", "randomized")


@dataclass(frozen=True)
class Range:
    """One randomized quantity: a uniform range [low, high] (``log``: uniform in log), integers (``integer``:
    both ends included), or a set of ``choices``; ``low == high`` marks a fixed setting kept in the table."""

    low: float
    high: float
    unit: str
    source: str
    what: str
    log: bool = False
    integer: bool = False
    choices: tuple = ()


_ISSUE = "guess (issue #11)"
_BAZELAIRE = "de Bazelaire et al., Radiology 2004;230:652; Gold et al., AJR 2004;183:343 (base values)"

RANGES: dict[str, Range] = {
    # Physics
    "field_strength_t": Range(1.5, 3.0, "T", "clinical field strengths", "main field", choices=(1.5, 3.0)),
    "te_ms": Range(60.0, 130.0, "ms", _ISSUE, "effective echo time (echo at the k-space centre)"),
    "tr_ms": Range(2000.0, 6000.0, "ms", _ISSUE, "repetition time"),
    "t1_scale": Range(0.7, 1.3, "ratio", f"guess; around {_BAZELAIRE}", "per-tissue T1 factor (water)"),
    "t2_scale": Range(0.7, 1.3, "ratio", f"guess; around {_BAZELAIRE}", "per-tissue T2 factor (water)"),
    "pd_scale": Range(0.8, 1.2, "ratio", "guess", "per-tissue proton density factor (PD capped at 1)"),
    "fat_t2_ms": Range(100.0, 160.0, "ms", "Henkelman et al., Radiology 1992 (J-coupling); limits guess",
                       "apparent TSE T2 of fat protons"),
    "edema_t2_ms": Range(40.0, 150.0, "ms", _ISSUE, "T2 of muscle edema"),
    "sequence": Range(0, 0, "", "guess", "echo-train sequence", choices=("tse", "haste")),
    "tse_echo_train_length": Range(8, 32, "echoes", "guess", "TSE echo train length (raised to reach TE)",
                                   integer=True),
    "tse_echo_spacing_ms": Range(7.0, 15.0, "ms", "guess", "TSE echo spacing"),
    "haste_echo_spacing_ms": Range(3.0, 6.0, "ms", "guess", "HASTE echo spacing (one shot: all lines)"),
    "kspace_order": Range(0, 0, "", "Bernstein et al., Handbook of MRI Pulse Sequences 2004 (ch. 16)",
                          "phase-encode ordering of the echo train", choices=("linear", "centric")),
    "readout_bandwidth_hz_px": Range(300.0, 800.0, "Hz/px", "guess", "readout bandwidth (fat-water shift)"),
    # Acquisition
    "pixel_spacing_mm": Range(0.5, 2.0, "mm", _ISSUE, "in-plane spacing; field of view = spacing x size"),
    "slice_thickness_mm": Range(2.0, 8.0, "mm", _ISSUE, "slice thickness (= slice spacing)"),
    "anatomy_overscan": Range(1.3, 1.3, "ratio", "guess",
                              "the anatomy is fitted to at most this times the field of view (rest cropped)"),
    "kspace_fraction": Range(0.5, 1.0, "ratio", "guess",
                             "acquired / reconstructed matrix per in-plane axis (truncation: Gibbs ringing)"),
    "partial_fourier_probability": Range(0.5, 0.5, "probability", "guess", "chance of partial Fourier"),
    "partial_fourier_fraction": Range(0.625, 0.875, "ratio", "Bernstein et al. 2004 (ch. 13): 5/8-7/8",
                                      "acquired share of phase-encode lines, zero-filled"),
    "snr": Range(8.0, 60.0, "ratio", "guess", "healthy-muscle signal / noise SD (Rician)"),
    "bias_amplitude": Range(0.1, 0.5, "ratio", "guess", "multiplicative bias field spans +-this over the body"),
    "bias_correlation_fov": Range(0.15, 0.5, "ratio", "guess", "bias field correlation length / field of view"),
    "nonlinearity_slope": Range(0.6, 1.6, "ratio", "guess",
                                "slopes of the monotone intensity curve (log-uniform, 4 segments)", log=True),
    "ghost_probability": Range(0.5, 0.5, "probability", "guess", "chance of motion ghosts"),
    "ghost_phase_rad": Range(0.02, 0.4, "rad", "guess",
                             "peak phase error per line (ghost amplitude ~ J1 of it)"),
    "ghost_shift_fov": Range(0.1, 0.5, "ratio", "guess", "ghost distance along phase encode / field of view"),
    "ghost_offset_rad": Range(0.0, 2 * math.pi, "rad", "uniform phase", "phase of the periodic motion"),
    "intensity_scale_log10": Range(1.0, 3.5, "log10", "guess", "arbitrary scanner scale (integer storage)"),
    # Anatomy
    "edema_count": Range(0, 4, "patches", "guess", "extra edema patches anywhere in muscle", integer=True),
    "edema_radius_mm": Range(5.0, 30.0, "mm", "guess", "extra edema patch radius"),
    "fluid_count": Range(0, 3, "collections", "guess", "fluid collections / cysts in muscle", integer=True),
    "fluid_radius_mm": Range(3.0, 25.0, "mm", "guess", "fluid collection radius"),
    "atrophy_pattern": Range(0, 0, "", "guess", "fatty atrophy pattern",
                             choices=("none", "graded", "patchy", "peripheral", "moth-eaten")),
    "atrophy_fat_fraction": Range(0.3, 0.9, "fraction", "guess", "fat fraction of replaced muscle"),
    "atrophy_coverage": Range(0.1, 0.6, "fraction", "guess", "share of an affected muscle replaced"),
    "atrophy_patch_mm": Range(6.0, 25.0, "mm", "guess", "patchy pattern correlation length"),
    "atrophy_moth_mm": Range(1.0, 3.0, "mm", "guess", "moth-eaten pattern correlation length"),
    "atrophy_rim_mm": Range(1.0, 6.0, "mm", "guess", "peripheral pattern rim depth"),
    "void_count": Range(0, 3, "voids", "guess", "signal voids (metal / air): no signal, SFF 0", integer=True),
    "void_radius_mm": Range(2.0, 15.0, "mm", "guess", "signal void radius"),
    "random_envelope_mm": Range(60.0, 200.0, "mm", "guess", "'random' anatomy: semi-axes of the body"),
    "random_fat_mm": Range(3.0, 40.0, "mm", "guess", "'random' anatomy: subcutaneous fat thickness"),
    "random_muscles": Range(2, 8, "muscles", "guess", "'random' anatomy: muscles (label groups)", integer=True),
    "random_structures": Range(2, 10, "blobs", "guess", "'random' anatomy: blobs of random tissues",
                               integer=True),
    "random_structure_mm": Range(4.0, 40.0, "mm", "guess", "'random' anatomy: blob radius"),
}

# Tissues a blob of the "random" anatomy may be made of (bones get a cortex around their marrow).
RANDOM_STRUCTURE_TISSUES = (
    "marrow_long_bone", "fluid", "liver", "spleen", "kidney", "bowel", "visceral_fat", "intervertebral_disc",
    "flowing_blood", "slow_blood", "edema", "intermuscular_fat",
)


def draw(rng: np.random.Generator, name: str) -> float | int | str:
    """One value of the named range, as a plain JSON-serialisable Python value."""
    spec = RANGES[name]
    if spec.choices:
        return spec.choices[int(rng.integers(len(spec.choices)))]
    if spec.integer:
        return int(rng.integers(int(spec.low), int(spec.high) + 1))
    if spec.log:
        return float(math.exp(rng.uniform(math.log(spec.low), math.log(spec.high))))
    return float(rng.uniform(spec.low, spec.high))


def draw_protocol(rng: np.random.Generator, size: int) -> dict:
    """Case-level physics and acquisition of the randomized domain (every value JSON-serialisable).

    The echo train is lengthened where needed so that the effective TE is one of its echoes; a HASTE train
    reads every acquired phase-encode line in one shot.
    """
    names = ("field_strength_t", "te_ms", "tr_ms", "fat_t2_ms", "edema_t2_ms", "sequence", "kspace_order",
             "readout_bandwidth_hz_px", "pixel_spacing_mm", "slice_thickness_mm", "snr", "bias_amplitude",
             "bias_correlation_fov", "intensity_scale_log10")
    drawn: dict = {name: draw(rng, name) for name in names}
    drawn["kspace_fraction"] = [draw(rng, "kspace_fraction") for _ in range(2)]  # (rows, cols)
    drawn["partial_fourier"] = (
        draw(rng, "partial_fourier_fraction") if rng.random() < fixed("partial_fourier_probability") else 1.0
    )
    drawn["nonlinearity_slopes"] = [draw(rng, "nonlinearity_slope") for _ in range(4)]
    if rng.random() < fixed("ghost_probability"):
        drawn["ghost_phase_rad"] = draw(rng, "ghost_phase_rad")
        drawn["ghost_shift_fov"] = draw(rng, "ghost_shift_fov")
        drawn["ghost_offset_rad"] = draw(rng, "ghost_offset_rad")
    if drawn["sequence"] == "tse":
        spacing, length = draw(rng, "tse_echo_spacing_ms"), draw(rng, "tse_echo_train_length")
    else:
        spacing = draw(rng, "haste_echo_spacing_ms")
        length = int(round(size * min(drawn["kspace_fraction"]) * drawn["partial_fourier"]))
    drawn["echo_spacing_ms"] = spacing
    drawn["echo_train_length"] = max(int(length), int(math.ceil(drawn["te_ms"] / spacing)))
    return drawn


def randomize_tissues(rng: np.random.Generator, props: dict[str, np.ndarray], drawn: dict) -> dict:
    """Scale each tissue's T1, T2 and PD by factors from the table (PD capped at 1, fat fractions kept, so fat
    stays fat and fluid stays fat-free); set the fat protons' and edema's T2. Returns the factors drawn."""
    from napari_sff.simulate.tissues import TISSUE_IDS

    factors = {}
    for name, index in TISSUE_IDS.items():
        if name == "fat_protons":
            continue
        t1, t2, pd = (draw(rng, key) for key in ("t1_scale", "t2_scale", "pd_scale"))
        props["t1"][index] *= t1
        props["t2"][index] *= t2
        props["pd"][index] = min(props["pd"][index] * pd, 1.0)
        factors[name] = [round(t1, 4), round(t2, 4), round(pd, 4)]
    fat = TISSUE_IDS["fat_protons"]
    t1 = draw(rng, "t1_scale")
    props["t1"][fat] *= t1
    props["t2"][fat] = drawn["fat_t2_ms"]
    props["t2"][TISSUE_IDS["edema"]] = drawn["edema_t2_ms"]
    factors["fat_protons"] = [round(t1, 4), 1.0, 1.0]
    return factors


def fixed(name: str) -> float:
    """A fixed setting of the table (``low == high``)."""
    spec = RANGES[name]
    if spec.low != spec.high:
        raise ValueError(f"{name} is a range, not a fixed setting; draw it with draw(rng, {name!r})")
    return float(spec.low)


def check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; valid domains: {', '.join(DOMAINS)}")


def ranges_markdown() -> str:
    """The table as markdown: what ``docs/simulator_ranges.md`` holds (a test keeps them equal)."""
    lines = [
        "# Simulator ranges of the randomized domain",
        "",
        "Generated from `napari_sff.simulate.randomization.RANGES` by `write_ranges_doc()`; do not edit by hand.",
        "Used by `simulate_case(..., domain=\"randomized\")` and `napari-sff simulate --domain randomized`; "
        "every drawn value is recorded in `case.params[\"randomized\"]`.",
        "",
        "| name | range | unit | what | source |",
        "|---|---|---|---|---|",
    ]
    for name, spec in RANGES.items():
        if spec.choices:
            span = " / ".join(str(c) for c in spec.choices)
        elif spec.low == spec.high:
            span = f"{spec.low:g} (fixed)"
        else:
            span = f"{spec.low:g} - {spec.high:g}" + (" (log-uniform)" if spec.log else "")
            span += " (integer)" if spec.integer else ""
        lines.append(f"| `{name}` | {span} | {spec.unit} | {spec.what} | {spec.source} |")
    lines += ["", "Structures of the `random` anatomy: " + ", ".join(RANDOM_STRUCTURE_TISSUES) + ".", ""]
    from napari_sff.simulate.tissues import DEFAULT_MUSCLE_PRIOR, MUSCLE_FAT_BY_CONDITION, MUSCLE_PRIORS

    lines += [
        "## Muscle priors (`--muscle-prior`, `MUSCLE_PRIORS`; both domains)",
        "",
        "How often a case's muscles are healthy, sarcopenic or myopathic (base fat fraction per muscle: "
        + ", ".join(f"{name} {low:g}-{high:g}" for name, (low, high) in MUSCLE_FAT_BY_CONDITION.items())
        + "), and in the randomized domain how often no `atrophy_pattern` is added.",
        "",
        "| prior | healthy / sarcopenic / myopathic | no atrophy pattern | source |",
        "|---|---|---|---|",
    ]
    for name, prior in MUSCLE_PRIORS.items():
        shares = " / ".join(f"{prior.conditions[c]:g}" for c in MUSCLE_FAT_BY_CONDITION)
        none = "as the table (1 in 5)" if prior.no_atrophy is None else f"{prior.no_atrophy:g}"
        default = " (default)" if name == DEFAULT_MUSCLE_PRIOR else ""
        lines.append(f"| `{name}`{default} | {shares} | {none} | {prior.source} |")
    lines.append("")
    return "\n".join(lines)


def write_ranges_doc(path: str | Path = "docs/simulator_ranges.md") -> Path:
    """Regenerate the markdown table after changing ``RANGES`` (``python -m napari_sff.simulate.randomization``)."""
    from napari_sff.io import atomic_write_text

    return atomic_write_text(path, ranges_markdown())


if __name__ == "__main__":
    print(write_ranges_doc())
