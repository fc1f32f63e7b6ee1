"""The public API: one simulated case (``simulate_case``) or many (``simulate_cases``), and the result type."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from napari_sff.simulate.abdomen import ABDOMEN_LABELS, _build_abdomen
from napari_sff.simulate.acquisition import (
    _acquire,
    _bias_field,
    _dominant_subvoxel,
    _render,
    _rician,
    _store,
    _tissue_properties,
    _tse_weight,
)
from napari_sff.simulate.artifacts import apply_curve, echo_times, kspace_acquire, monotone_curve, t2_classes
from napari_sff.simulate.geometry import _Grid, _Scene, _smooth_field
from napari_sff.simulate.lesions import add_atrophy, add_lesions, build_random, random_label_names
from napari_sff.simulate.limbs import LIMB_LAYOUTS, _build_limbs
from napari_sff.simulate.muscles import _draw_muscle_fat
from napari_sff.simulate.pelvis import PELVIS_LABELS, _build_pelvis
from napari_sff.simulate.randomization import check_domain, draw_protocol, fixed, randomize_tissues
from napari_sff.simulate.tissues import (
    _FLOAT,
    ALL_ANATOMIES,
    ANATOMIES,
    DEFAULT_MUSCLE_PRIOR,
    FOV_MM,
    GAMMA_HZ_PER_T,
    HEALTHY_PARASPINAL_FAT,
    MIXED_TISSUE,
    RANDOM_ANATOMY,
    SIGNAL_PD_THRESHOLD,
    SUBVOXELS,
    TISSUE_IDS,
    get_muscle_prior,
)


@dataclass
class SimulatedCase:
    """One simulated volume pair; all arrays are (slices, rows, cols) in display order."""

    t2w: np.ndarray  # float32, integer-valued scanner units (0..65535) with bias field and Rician noise
    sff: np.ndarray  # float32 in [0, 1], noise-free, 0 where there is hardly any signal
    labels: np.ndarray  # uint16; 0 = background, 1..K = muscle groups (only where muscle dominates a voxel)
    label_names: dict[int, str]
    spacing: tuple[float, float, float]  # (slice thickness, row, col) in mm
    params: dict  # JSON-serialisable case description (anatomy, seed, protocol, composition)
    tissues: np.ndarray | None = None  # uint8 dominant tissue id (TISSUE_IDS / MIXED_TISSUE), on request


def simulate_case(
    anatomy: str = "thigh",
    *,
    size: int = 256,
    n_slices: int = 24,
    seed: int = 0,
    field_strength: float | None = None,
    return_tissues: bool = False,
    domain: str = "default",
    muscle_prior: str = DEFAULT_MUSCLE_PRIOR,
) -> SimulatedCase:
    """Simulate one paired T2w/SFF volume; the same arguments always give bit-identical arrays.

    The seed fixes the anatomy and protocol independently of ``size`` and ``n_slices`` (a small preview shows
    the same patient). In-plane spacing is field of view / size: 1-2 mm at the default size of 256.
    ``field_strength`` (1.5 or 3.0 T) overrides the drawn one. ``return_tissues`` adds the dominant tissue per
    voxel (ids in ``TISSUE_IDS``; ``MIXED_TISSUE`` where no tissue fills 3 of the 4 sub-voxels), which is what
    tests and evaluations need to look at one tissue at a time.

    ``domain="randomized"`` draws physics, acquisition and extra anatomy from the ranges of
    ``randomization.RANGES`` (recorded in ``params["randomized"]``) from streams of its own, so the same seed
    keeps its anatomy; the in-plane spacing is drawn (0.5-2 mm) and the field of view is spacing x size,
    with the anatomy fitted to at most ``anatomy_overscan`` times it (a small field of view crops). The
    ``random`` anatomy (random muscles and tissue blobs in a skin-fat envelope) works in both domains.
    ``muscle_prior`` (a name in ``MUSCLE_PRIORS``) sets how often muscles are healthy, sarcopenic, myopathic or
    (randomized domain) fatty-atrophied; one other than the default is recorded in ``params["muscle_prior"]``.
    """
    check_domain(domain)
    prior = get_muscle_prior(muscle_prior)
    check_anatomies([anatomy])
    if size < 8 or n_slices < 1:
        raise ValueError(f"size must be >= 8 and n_slices >= 1, got size={size}, n_slices={n_slices}")
    if field_strength not in (None, 1.5, 3.0):
        raise ValueError(f"field_strength must be 1.5 or 3.0 (tesla) or None, got {field_strength}")
    # Independent streams, so that e.g. the anatomy of a seed does not change with size or field strength.
    root = np.random.SeedSequence([seed, ALL_ANATOMIES.index(anatomy)])
    protocol_rng, warp_rng, anatomy_rng, tissue_rng, noise_rng = (
        np.random.default_rng(stream) for stream in root.spawn(5)
    )
    randomized = domain == "randomized"
    if randomized:  # spawned after the five above: the default streams stay as they were
        draw_rng, lesion_rng = (np.random.default_rng(stream) for stream in root.spawn(2))
        drawn = draw_protocol(draw_rng, size)

    # Acquisition protocol.
    drawn_field = float(protocol_rng.choice([1.5, 3.0]))
    field_strength = drawn_field if field_strength is None else float(field_strength)
    tr, te = protocol_rng.uniform(3000.0, 3500.0), protocol_rng.uniform(80.0, 100.0)
    snr, bias_amplitude = protocol_rng.uniform(15.0, 50.0), protocol_rng.uniform(0.1, 0.3)
    scale = 10 ** protocol_rng.uniform(1.0, 3.5)
    # Fat-water chemical shift of the T2w readout: 3.4 ppm of the Larmor frequency over the pixel bandwidth.
    bandwidth_hz = protocol_rng.uniform(300.0, 800.0)
    shift_px = 3.4e-6 * GAMMA_HZ_PER_T * field_strength / bandwidth_hz
    readout_axis = int(protocol_rng.integers(1, 3))
    fat_shift = int(round(SUBVOXELS * shift_px)) * (1 if protocol_rng.random() < 0.5 else -1)
    thickness = protocol_rng.uniform(3.0, 6.0)
    n_limbs = 1 if anatomy in ("abdomen", "pelvis", RANDOM_ANATOMY) or protocol_rng.random() < 0.4 else 2
    fov = protocol_rng.uniform(*FOV_MM[anatomy, n_limbs])
    spacing = fov / size
    fit_fov = None
    if randomized:
        # The field is the protocol stream's draw above (1.5 or 3 T, equally likely: the range's own choices), not
        # ``drawn``'s, which was never applied; ``params["randomized"]`` records the field used (until 7 December
        # 2026 it kept the unused draw). Kept so, every seed renders as before (pinned hashes, the model card's data).
        drawn["field_strength_t"] = field_strength
        tr, te, snr = drawn["tr_ms"], drawn["te_ms"], drawn["snr"]
        bias_amplitude, scale = drawn["bias_amplitude"], 10 ** drawn["intensity_scale_log10"]
        bandwidth_hz = drawn["readout_bandwidth_hz_px"]
        shift_px = 3.4e-6 * GAMMA_HZ_PER_T * field_strength / bandwidth_hz
        fat_shift = int(round(SUBVOXELS * shift_px)) * (1 if fat_shift >= 0 else -1)
        thickness, spacing = drawn["slice_thickness_mm"], drawn["pixel_spacing_mm"]
        anatomy_fov, fov = fov, spacing * size
        fit_fov = float(np.clip(anatomy_fov, fov, fixed("anatomy_overscan") * fov))

    # Oversampled grid, pose and warp.
    fine = size * SUBVOXELS
    fine_axis = ((np.arange(fine) + 0.5) * fov / fine - fov / 2).astype(_FLOAT)
    z_mm = ((np.arange(n_slices) - (n_slices - 1) / 2) * thickness).astype(_FLOAT)
    warp_mm, warp_corr = warp_rng.uniform(2.0, 6.0), warp_rng.uniform(40.0, 80.0)
    fine_axes = (z_mm, fine_axis, fine_axis)
    warp = [_smooth_field(warp_rng, fine_axes, (150.0, warp_corr, warp_corr)) for _ in range(2)]
    grid = _Grid(
        x=fine_axis,
        y=fine_axis,
        z=z_mm,
        shift=tuple(warp_rng.uniform(-0.04, 0.04, 2) * fov),
        rotation=warp_rng.uniform(-0.1, 0.1),
        field_x=warp[0],
        field_y=warp[1],
        warp_mm=warp_mm,
        fit_fov=fit_fov,
    )
    scene = _Scene(grid, anatomy_rng)

    # Anatomy.
    if anatomy == RANDOM_ANATOMY:
        label_names = random_label_names(anatomy_rng)
    elif anatomy == "pelvis":
        label_names = PELVIS_LABELS
    else:
        label_names = ABDOMEN_LABELS if anatomy == "abdomen" else LIMB_LAYOUTS[anatomy].label_names
    overrides = {"paraspinal": HEALTHY_PARASPINAL_FAT}
    condition, group_fat = _draw_muscle_fat(anatomy_rng, label_names, overrides, prior.conditions)
    props = _tissue_properties(tissue_rng, field_strength)
    if anatomy == "abdomen":
        anatomy_params, props["fat"][TISSUE_IDS["liver"]] = _build_abdomen(scene, group_fat)
    elif anatomy == RANDOM_ANATOMY:
        anatomy_params = build_random(scene, group_fat)
    elif anatomy == "pelvis":
        anatomy_params = _build_pelvis(scene, group_fat)
    else:
        anatomy_params = _build_limbs(scene, anatomy, n_limbs, condition, group_fat)
    if randomized:
        drawn["tissue_t1_t2_pd_factors"] = randomize_tissues(draw_rng, props, drawn)
        drawn.update(add_atrophy(scene, lesion_rng, prior.no_atrophy))
        drawn.update(add_lesions(scene, lesion_rng, scene.grid.fov))

    # Physics.
    # Muscle texture is built at output resolution: within one output voxel it would average out anyway.
    out_axis = ((np.arange(size) + 0.5) * spacing - fov / 2).astype(_FLOAT)
    out_axes = (z_mm, out_axis, out_axis)
    fibre_mm = tissue_rng.uniform(20.0, 40.0)  # fat streaks run along the fibres, i.e. through the slices
    marbling_mm, streak_mm = tissue_rng.uniform(5.0, 10.0), max(2.5, 1.2 * spacing)
    texture = (
        _smooth_field(tissue_rng, out_axes, (fibre_mm, marbling_mm, marbling_mm)),
        _smooth_field(tissue_rng, out_axes, (fibre_mm, streak_mm, streak_mm)),
    )
    water_class = None
    if randomized:
        water_class, class_t2 = t2_classes(props["t2"][:-1])
        water_class = np.append(water_class, np.uint8(0))  # the fat-proton row is never painted
    signal, fat_pd, total_pd = _render(scene, props, tr, te, texture, (readout_axis, fat_shift), water_class)
    has_signal = total_pd > SIGNAL_PD_THRESHOLD
    sff = np.where(has_signal, fat_pd / np.where(has_signal, total_pd, 1), 0).clip(0, 1).astype(_FLOAT)

    # Acquisition: noise relative to healthy muscle (fat fraction 0.04) at this protocol.
    m = TISSUE_IDS["muscle"]
    reference = float(
        props["pd"][m]
        * (
            0.96 * _tse_weight(props["t1"][m], props["t2"][m], tr, te)
            + 0.04 * _tse_weight(props["t1"][-1], props["t2"][-1], tr, te)
        )
    )
    if randomized:
        t2w = _acquire_randomized(noise_rng, signal, [*class_t2, props["t2"][-1]], has_signal,
                                  out_axes, reference, 3 - readout_axis, drawn)
    else:
        t2w = _acquire(noise_rng, signal, has_signal, out_axes, reference, snr, bias_amplitude, scale)

    group_lut = np.asarray(scene.muscle_group, np.uint16)
    labels = group_lut[_dominant_subvoxel(scene.muscle, 0)]
    tissues = _dominant_subvoxel(scene.tissue, MIXED_TISSUE)
    counts = np.bincount(labels.ravel(), minlength=len(label_names) + 1)
    sums = np.bincount(labels.ravel(), weights=sff.ravel(), minlength=len(label_names) + 1)
    params = {
        "anatomy": anatomy,
        "seed": int(seed),
        "size": int(size),
        "n_slices": int(n_slices),
        "field_strength_t": float(field_strength),
        "tr_ms": round(float(tr), 1),
        "te_ms": round(float(te), 1),
        "snr": round(float(snr), 2),
        "bias_amplitude": round(float(bias_amplitude), 3),
        "intensity_scale": round(float(scale), 3),
        "fov_mm": round(float(fov), 2),
        "bandwidth_hz_per_px": round(float(bandwidth_hz), 1),
        "readout_axis": readout_axis,
        "fat_shift_px": round(fat_shift / SUBVOXELS, 2),
        "condition": condition,
        "muscle_fat_fraction": {label_names[g]: round(v, 4) for g, v in group_fat.items()},
        "muscle_sff": {
            name: round(float(sums[g] / counts[g]), 4) for g, name in label_names.items() if counts[g]
        },
        "edema": bool((tissues == TISSUE_IDS["edema"]).any()),
        "fluid": bool((tissues == TISSUE_IDS["fluid"]).any()),
        "tissue_ids": dict(TISSUE_IDS),
        **anatomy_params,
    }
    if randomized:
        params["domain"] = domain
        params["randomized"] = _rounded(drawn)
    if muscle_prior != DEFAULT_MUSCLE_PRIOR:  # the default's parameters (and pinned hashes) stay as they were
        params["muscle_prior"] = muscle_prior
    return SimulatedCase(
        t2w=t2w,
        sff=sff,
        labels=labels,
        label_names=dict(label_names),
        spacing=(float(thickness), float(spacing), float(spacing)),
        params=params,
        tissues=tissues if return_tissues else None,
    )


def simulate_cases(
    n_cases: int,
    *,
    seed: int = 0,
    size: int = 256,
    n_slices: int = 24,
    return_tissues: bool = False,
    domain: str = "default",
    muscle_prior: str = DEFAULT_MUSCLE_PRIOR,
    anatomies: Sequence[str] | None = None,
) -> Iterator[SimulatedCase]:
    """Yield ``n_cases`` cases; anatomies are shuffled within each block of three so they stay balanced (of
    four in the randomized domain, which adds the ``random`` anatomy; ``anatomies`` names another rotation,
    e.g. with the ``pelvis``).

    Case i uses the seed ``SeedSequence([seed, i]).generate_state(1)[0]`` (stored in ``params["seed"]``), so
    any single case can be regenerated with ``simulate_case`` alone.
    """
    check_domain(domain)
    if anatomies is None:
        anatomies = ANATOMIES if domain == "default" else (*ANATOMIES, RANDOM_ANATOMY)
    check_anatomies(anatomies)
    order_rng = np.random.default_rng(np.random.SeedSequence([seed, 2**31]))
    order: list[str] = []
    for index in range(n_cases):
        if not order:
            order = [anatomies[i] for i in order_rng.permutation(len(anatomies))]
        case_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        yield simulate_case(order.pop(0), size=size, n_slices=n_slices, seed=case_seed,
                            return_tissues=return_tissues, domain=domain, muscle_prior=muscle_prior)


def check_anatomies(anatomies: Sequence[str]) -> None:
    """One clear error for an empty, repeated or unknown anatomy name."""
    unknown = [name for name in anatomies if name not in ALL_ANATOMIES]
    if unknown:
        problem = f"unknown anatomy {unknown[0]!r}"
    elif not anatomies or len(set(anatomies)) != len(anatomies):
        problem = f"anatomies must be distinct and not empty, got {list(anatomies)}"
    else:
        return
    raise ValueError(f"{problem}; valid anatomies: {', '.join(ALL_ANATOMIES)}")


def _acquire_randomized(
    noise_rng: np.random.Generator,
    signal: np.ndarray,
    class_t2_ms: list[float],
    body: np.ndarray,
    axes: tuple[np.ndarray, ...],
    reference: float,
    phase_axis: int,
    drawn: dict,
) -> np.ndarray:
    """Randomized acquisition: echo train, truncation, partial Fourier and ghosts in k-space, then bias,
    Rician noise, the monotone intensity curve and integer storage (all settings from ``drawn``)."""
    n_phase = signal.shape[1 + phase_axis]
    times = echo_times(n_phase, drawn["te_ms"], drawn["echo_spacing_ms"], drawn["echo_train_length"],
                       drawn["kspace_order"])
    ghost = None
    if "ghost_phase_rad" in drawn:
        ghost = (drawn["ghost_phase_rad"], drawn["ghost_shift_fov"] * n_phase, drawn["ghost_offset_rad"])
    image = kspace_acquire(signal, class_t2_ms, phase_axis, echo_times_ms=times, te_ms=drawn["te_ms"],
                           kspace_fraction=tuple(drawn["kspace_fraction"]),
                           partial_fourier=drawn["partial_fourier"], ghost=ghost)
    bias = _bias_field(noise_rng, body, axes, drawn["bias_amplitude"], drawn["bias_correlation_fov"])
    magnitude = _rician(noise_rng, image.real * bias, reference / drawn["snr"], image.imag * bias)
    magnitude /= np.float32(reference)
    top = float(np.percentile(magnitude[body], 99.5)) if body.any() else 1.0
    curved = apply_curve(magnitude, monotone_curve(drawn["nonlinearity_slopes"], max(top, 1e-3)))
    return _store(curved, 10 ** drawn["intensity_scale_log10"])


def _rounded(value):
    """JSON-friendly copy with floats rounded to 4 significant decimals (params stay readable)."""
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, float | np.floating):
        return round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value
