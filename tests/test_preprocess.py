"""The T2w normalisations: the 99th-percentile rule the shipped models use and the subcutaneous-fat reference."""

import numpy as np
import pytest
from conftest import limb

from napari_sff.preprocess import (
    FAT_LEVEL,
    NORMALISATIONS,
    fat_reference,
    normalisation_method,
    normalise_t2w,
)


def test_fat_reference_reads_the_subcutaneous_fat_not_the_brightest_tissue():
    image = limb(fluid=3000.0)
    assert fat_reference(image, 0.1 * np.percentile(image, 99)) == pytest.approx(1000.0)
    fat_based = normalise_t2w(image, "fat")
    p99 = normalise_t2w(image, "p99")
    fat_pixels = image == 1000.0
    assert np.allclose(fat_based[fat_pixels], FAT_LEVEL)
    assert p99[fat_pixels].max() < 0.4  # the fluid pocket took the 99th percentile: fat is read as ~0.33


def test_fat_normalisation_is_the_same_with_or_without_fluid():
    """What the fat reference is for: a fluid collection must not change how muscle and fat are scaled."""
    plain, with_fluid = limb(), limb(fluid=3000.0)
    muscle = plain == 300.0
    muscle &= with_fluid == 300.0
    assert np.allclose(normalise_t2w(plain, "fat")[muscle], normalise_t2w(with_fluid, "fat")[muscle])
    assert not np.allclose(normalise_t2w(plain, "p99")[muscle], normalise_t2w(with_fluid, "p99")[muscle], rtol=0.1)


def test_fat_normalisation_falls_back_to_the_percentile_rule_without_a_body():
    speck = np.zeros((64, 64))
    speck[30:33, 30:33] = 100.0  # 9 pixels: no outer band to search
    assert fat_reference(speck, 10.0) is None
    np.testing.assert_array_equal(normalise_t2w(speck, "fat"), normalise_t2w(speck, "p99"))


def test_scale_invariance_and_unknown_method():
    image = limb(fluid=3000.0)
    np.testing.assert_allclose(normalise_t2w(image * 37.0, "fat"), normalise_t2w(image, "fat"), atol=1e-6)
    assert set(NORMALISATIONS) == {"p99", "fat"}
    with pytest.raises(ValueError, match="unknown normalisation 'max'"):
        normalise_t2w(image, "max")


def test_a_recorded_normalisation_name_maps_back_to_its_method():
    """Checkpoints record the method's versioned name; those made before it was recorded used the percentile rule;
    a name this version does not know is refused (the weights would be fed an input they never saw)."""
    assert normalisation_method(None) == "p99"
    assert normalisation_method("t2w-slice-p99-body10-clip1.5-v1") == "p99"
    assert normalisation_method("t2w-slice-subcutaneous-fat-p75-band-v1") == "fat"
    with pytest.raises(ValueError, match="'t2w-slice-zscore-v9'.*update napari-sff"):
        normalisation_method("t2w-slice-zscore-v9")
