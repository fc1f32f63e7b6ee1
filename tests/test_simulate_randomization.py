"""The randomized simulator domain: the ranges table and its doc, the draws, the k-space effects against known
answers, and the randomized cases (reproducible, SFF still 0 in voids and fluid, ~0.9 in subcutaneous fat)."""

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy.special import j0, j1, jv

from napari_sff.simulate import TISSUE_IDS, simulate_case, simulate_cases
from napari_sff.simulate.artifacts import echo_times, kspace_acquire
from napari_sff.simulate.randomization import RANGES, draw_protocol, ranges_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "simulator_ranges.md"
SIZE, SLICES = 64, 3


@cache
def randomized(anatomy: str, seed: int):
    return simulate_case(anatomy, size=SIZE, n_slices=SLICES, seed=seed, domain="randomized", return_tissues=True)


def test_doc_matches_the_table():
    assert DOC.read_text(encoding="utf-8") == ranges_markdown(), "run python -m napari_sff.simulate.randomization"
    for name, spec in RANGES.items():
        assert spec.unit is not None and spec.source and spec.what, name


def _values(name: str, draws: list[dict]) -> list:
    out = []
    for drawn in draws:
        value = drawn.get(name)
        out.extend(value if isinstance(value, list) else [] if value is None else [value])
    return out


def test_drawn_protocol_stays_inside_and_covers_the_ranges():
    draws = [draw_protocol(np.random.default_rng(seed), 256) for seed in range(400)]
    aliases = {"kspace_fraction": "kspace_fraction", "nonlinearity_slope": "nonlinearity_slopes",
               "partial_fourier_fraction": "partial_fourier"}
    checked = 0
    for name, spec in RANGES.items():
        values = _values(aliases.get(name, name), draws)
        if name == "partial_fourier_fraction":
            values = [v for v in values if v < 1.0]
            assert 0.3 < len(values) / len(draws) < 0.7  # partial_fourier_probability 0.5
        if not values:
            continue
        checked += 1
        if spec.choices:
            assert set(values) == set(spec.choices), name
            continue
        span = spec.high - spec.low
        assert min(values) >= spec.low and max(values) <= spec.high, name
        assert min(values) <= spec.low + 0.2 * span and max(values) >= spec.high - 0.2 * span, name
    assert checked >= 20
    for drawn in draws:  # the effective TE is one of the train's echoes
        assert drawn["echo_train_length"] * drawn["echo_spacing_ms"] >= drawn["te_ms"]


def test_case_params_record_the_draws_and_lesion_sizes_stay_in_range():
    for seed in range(3):
        params = json.loads(json.dumps(randomized("thigh", seed).params))
        drawn = params["randomized"]
        assert params["domain"] == "randomized" and params["te_ms"] == pytest.approx(drawn["te_ms"], abs=0.05)
        assert params["field_strength_t"] == drawn["field_strength_t"]  # the field the physics used, recorded once
        assert randomized("thigh", seed).spacing[1] == pytest.approx(drawn["pixel_spacing_mm"], abs=1e-3)
        for kind in ("edema", "fluid", "void"):
            spec = RANGES[f"{kind}_radius_mm"]
            assert all(spec.low <= r <= spec.high for r in drawn[f"{kind}_radii_mm"])
            assert len(drawn[f"{kind}_radii_mm"]) <= RANGES[f"{kind}_count"].high
        for t1, t2, pd in drawn["tissue_t1_t2_pd_factors"].values():
            assert 0.7 <= t1 <= 1.3 and 0.7 <= t2 <= 1.3 and 0.8 <= pd <= 1.2


def _single(image: np.ndarray) -> np.ndarray:
    return image[None, None].astype(np.float32)  # (classes, Z, H, W) with one class and one slice


def test_gibbs_overshoot_is_about_nine_percent():
    step = np.zeros((256, 256), np.float32)
    step[:, 64:192] = 1.0  # sharp edges along the columns
    out = np.abs(kspace_acquire(_single(step), None, 1, kspace_fraction=(1.0, 0.25)))[0]
    assert out[:, 64:192].max() - 1 == pytest.approx(0.0895, abs=0.01)  # the Wilbraham-Gibbs constant
    np.testing.assert_allclose(out[:, 128], out[0, 128], atol=1e-5)  # rows untouched
    untouched = np.abs(kspace_acquire(_single(step), None, 1))[0]
    np.testing.assert_allclose(untouched, step, atol=1e-5)


def test_partial_fourier_blurs_the_phase_axis_only():
    point = np.zeros((64, 64), np.float32)
    point[32, 32] = 1.0
    out = kspace_acquire(_single(point), None, 1, partial_fourier=0.625)[0]
    spectrum = np.abs(np.fft.fft2(out))
    k = np.fft.fftfreq(64) * 64
    missing = k < -(0.625 - 0.5) * 64
    assert spectrum[missing].max() < 1e-5 and spectrum[~missing].min() > 0.99  # lines gone along rows only
    magnitude = np.abs(out)
    assert magnitude[31, 32] > 0.05 and magnitude[32, 31] < 1e-5  # spread along the phase axis (rows) only


def test_motion_ghost_is_a_replica_at_the_expected_distance_and_amplitude():
    point = np.zeros((64, 64), np.float32)
    point[20, 30] = 1.0
    alpha, shift = 0.3, 10.0  # 10 px on 64: ghost orders do not alias onto each other
    out = np.abs(kspace_acquire(_single(point), None, 2, ghost=(alpha, shift, 0.0)))[0]
    assert out[20, 30] == pytest.approx(j0(alpha), rel=1e-4)
    for order, bessel in ((1, j1), (2, lambda a: jv(2, a))):
        for column in (30 - 10 * order, 30 + 10 * order):
            assert out[20, column] == pytest.approx(bessel(alpha), rel=1e-3)  # replicas J_n(alpha)
    others = np.ones(64, bool)
    others[[0, 10, 20, 30, 40, 50, 60]] = False
    assert out[20, others].max() < 1e-4  # higher orders only (J4(0.3) = 2e-5)
    assert np.all(out[np.arange(64) != 20] < 1e-5)  # along columns only


def _edge_width(profile: np.ndarray) -> int:
    """Pixels between 10 % and 90 % of a rising edge."""
    profile = profile / profile.max()
    return int(np.argmax(profile > 0.9) - np.argmax(profile > 0.1))


def test_echo_train_blurs_short_t2_more_along_the_phase_axis_only():
    n = 128
    square = np.zeros((n, n), np.float32)
    square[32:96, 32:96] = 1.0
    times = echo_times(n, 80.0, 5.0, n, "linear")  # HASTE-like single shot
    assert times[0] == 80.0
    images = np.stack([_single(square)[0], _single(square)[0]])
    short, long = (np.abs(kspace_acquire(images[i : i + 1], [t2], 1, echo_times_ms=times, te_ms=80.0))[0]
                   for i, t2 in enumerate((30.0, 1500.0)))
    assert _edge_width(short[:48, 64]) > _edge_width(long[:48, 64]) + 1  # phase axis (rows)
    assert _edge_width(short[64, :48]) == _edge_width(long[64, :48])  # readout untouched
    np.testing.assert_allclose(short[64, :], short[64, 64] * square[64, :], atol=0.05 * short[64, 64])


def test_default_domain_is_unchanged_and_rejects_unknown_domains():
    from tests.test_simulate import PINNED_CASES, test_simulator_output_is_pinned

    for anatomy in PINNED_CASES:
        test_simulator_output_is_pinned(anatomy)
    assert "domain" not in simulate_case("thigh", size=32, n_slices=1).params
    with pytest.raises(ValueError, match="default, randomized"):
        simulate_case("thigh", size=32, n_slices=1, domain="wild")


# sha256 of a small randomized case per anatomy (hashed as ``test_simulate.test_simulator_output_is_pinned``
# does), pinned on 7 December 2026 before the pelvis anatomy was added: adding an anatomy must not move these.
PINNED_RANDOMIZED_CASES = {
    "thigh": "c1ff2a4e130cf9768421f9b3c895fa8e4a39180d938874bc62783bb217206915",
    "calf": "a5df83010899d39a72926b1b6e3e51bf7e79faad1f53b9c0b99181e49fdfe53a",
    "abdomen": "df2b046b196563c6c48b293fa1c5d096bb82109cba15b271d3fe95ad5c43ae06",
    "random": "561adab31b19dcd6a82749f31e3ddd23ff544dc927651eaf0d26fe694fbae6d4",
}


@pytest.mark.parametrize("anatomy", sorted(PINNED_RANDOMIZED_CASES))
def test_randomized_output_is_pinned(anatomy):
    from tests.test_simulate import case_digest

    case = simulate_case(anatomy, size=48, n_slices=3, seed=7, return_tissues=True, domain="randomized")
    assert case_digest(case) == PINNED_RANDOMIZED_CASES[anatomy]


def test_default_rotations_are_pinned():
    """Which anatomy each case of a seed gets (the model card's data sets depend on it)."""
    randomized = [c.params["anatomy"] for c in simulate_cases(8, seed=1, size=16, n_slices=1, domain="randomized")]
    assert randomized == ["random", "thigh", "abdomen", "calf", "thigh", "random", "calf", "abdomen"]
    default = [c.params["anatomy"] for c in simulate_cases(6, seed=1, size=16, n_slices=1)]
    assert default == ["abdomen", "thigh", "calf", "calf", "thigh", "abdomen"]


def test_same_seed_gives_identical_randomized_case():
    a = simulate_case("calf", size=48, n_slices=2, seed=5, domain="randomized")
    b = simulate_case("calf", size=48, n_slices=2, seed=5, domain="randomized")
    for name in ("t2w", "sff", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.params == b.params
    other = simulate_case("calf", size=48, n_slices=2, seed=6, domain="randomized")
    assert not np.array_equal(a.t2w, other.t2w)
    default = simulate_case("calf", size=48, n_slices=2, seed=5)
    assert not np.array_equal(a.t2w, default.t2w)


def test_simulate_cases_mixes_in_the_random_anatomy():
    cases = list(simulate_cases(4, seed=1, size=32, n_slices=1, domain="randomized"))
    assert {c.params["anatomy"] for c in cases} == {"thigh", "calf", "abdomen", "random"}
    assert all(c.params["domain"] == "randomized" for c in cases)


@pytest.mark.parametrize("anatomy", ["thigh", "abdomen", "random"])
def test_randomized_sff_keeps_the_task_solvable(anatomy):
    air, fluid, fat = (TISSUE_IDS[n] for n in ("air", "fluid", "subcutaneous_fat"))
    for seed in range(3):
        case = randomized(anatomy, seed)
        tissues = case.tissues
        np.testing.assert_array_equal(case.t2w, np.rint(case.t2w))
        assert case.t2w.min() >= 0 and case.t2w.max() > 0
        assert np.all(case.sff[tissues == air] == 0)  # voids and background: no signal, SFF 0
        if (tissues == fluid).any():
            assert np.median(case.sff[tissues == fluid]) < 0.02
        assert 0.88 <= np.median(case.sff[tissues == fat]) <= 0.96


def test_muscle_priors_draw_their_conditions_and_atrophy_patterns():
    from collections import Counter

    from napari_sff.simulate import MUSCLE_PRIORS
    from napari_sff.simulate.lesions import add_atrophy
    from napari_sff.simulate.muscles import _draw_muscle_fat

    class NoMuscles:  # add_atrophy returns after drawing the pattern when a scene has fewer than two muscles
        muscle_group = [0]

    names = {1: "quadriceps", 2: "hamstrings"}
    n = 4000
    for prior in MUSCLE_PRIORS.values():
        rng = np.random.default_rng(3)
        conditions = Counter(_draw_muscle_fat(rng, names, {}, prior.conditions)[0] for _ in range(n))
        for condition, probability in prior.conditions.items():  # 4 binomial SDs at most
            assert abs(conditions[condition] / n - probability) < 4 * np.sqrt(probability * (1 - probability) / n)
        patterns = Counter(add_atrophy(NoMuscles(), rng, prior.no_atrophy)["atrophy_pattern"] for _ in range(n))
        assert set(patterns) == set(RANGES["atrophy_pattern"].choices)
        no_atrophy = 1 / len(RANGES["atrophy_pattern"].choices) if prior.no_atrophy is None else prior.no_atrophy
        assert abs(patterns["none"] / n - no_atrophy) < 4 * np.sqrt(no_atrophy * (1 - no_atrophy) / n)
    assert MUSCLE_PRIORS["population"].conditions["healthy"] > MUSCLE_PRIORS["simulator"].conditions["healthy"]


def test_a_muscle_prior_other_than_the_default_is_recorded_and_unknown_ones_are_refused():
    population = simulate_case("thigh", size=32, n_slices=1, seed=4, domain="randomized", muscle_prior="population")
    assert population.params["muscle_prior"] == "population"
    default = simulate_case("thigh", size=32, n_slices=1, seed=4, domain="randomized")
    assert "muscle_prior" not in default.params
    np.testing.assert_array_equal(default.t2w, simulate_case("thigh", size=32, n_slices=1, seed=4,
                                                             domain="randomized", muscle_prior="simulator").t2w)
    with pytest.raises(ValueError, match="simulator, population"):
        simulate_case("thigh", size=32, n_slices=1, muscle_prior="healthy")
