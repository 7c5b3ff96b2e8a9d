"""Smoothing in µm, slice-wise normalisation and thresholds."""

import numpy as np
import pytest

from napari_niche.core import (
    THRESHOLD_METHODS,
    InvalidImageError,
    NicheError,
    normalize_slices,
    smooth_um,
    threshold_mask,
    threshold_value,
)


def test_smoothing_sigma_is_in_micrometres_per_axis():
    img = np.zeros((41, 61, 61), np.float32)
    img[20, 30, 30] = 1.0
    spacing, sigma = (2.0, 0.5, 0.5), 3.0
    out = smooth_um(img, sigma, spacing=spacing)
    assert out.dtype == np.float32 and out.sum() == pytest.approx(1.0, rel=1e-3)
    for axis, s in enumerate(spacing):
        profile = out.sum(axis=tuple(a for a in range(3) if a != axis))
        pos = (np.arange(profile.size) - profile.size // 2) * s
        var_um2 = (profile * pos**2).sum() / profile.sum()
        assert np.sqrt(var_um2) == pytest.approx(sigma, rel=0.03)


def test_zero_sigma_returns_float_copy_and_2d_works():
    img = np.arange(12, dtype=np.uint16).reshape(3, 4)
    out = smooth_um(img, 0, spacing=(1, 1))
    np.testing.assert_array_equal(out, img)
    assert smooth_um(img, 1.0, spacing=0.5).shape == (3, 4)


def test_normalize_slices_undoes_depth_attenuation():
    rng = np.random.default_rng(0)
    base = rng.random((1, 30, 30)) + 0.5
    decay = np.exp(-np.arange(8) / 3.0)[:, None, None]
    stack = (base * decay).astype(np.float32)
    stack = np.concatenate([stack, np.zeros((1, 30, 30), np.float32)])  # an empty slice
    out = normalize_slices(stack)
    np.testing.assert_allclose(out[:8].mean(axis=(1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[:8], out[:1].repeat(8, 0), rtol=1e-4)
    assert np.all(out[8] == 0) and np.all(np.isfinite(out))


def test_nan_image_is_refused():
    img = np.ones((5, 5), np.float32)
    img[2, 2] = np.nan
    with pytest.raises(InvalidImageError, match="NaN"):
        smooth_um(img, 1.0, spacing=1.0)
    with pytest.raises(InvalidImageError, match="NaN"):
        threshold_value(img)


@pytest.mark.parametrize("method", sorted(THRESHOLD_METHODS))
def test_automatic_methods_separate_two_populations(method):
    rng = np.random.default_rng(1)
    truth = np.zeros((20, 64, 64), bool)
    truth[:, 10:30, 10:40] = True
    img = np.where(truth, 800.0, 100.0) + rng.normal(0, 30, truth.shape)
    mask = threshold_mask(img, method=method)
    assert 100 < threshold_value(img, method) < 800
    assert (mask == truth).mean() > 0.95


def test_manual_threshold_and_errors():
    img = np.array([[0, 1], [2, 3]], float)
    np.testing.assert_array_equal(
        threshold_mask(img, method="manual", value=1.5), [[False, False], [True, True]]
    )
    with pytest.raises(NicheError, match="manual threshold needs"):
        threshold_mask(img, method="manual")
    with pytest.raises(NicheError, match="Unknown threshold method"):
        threshold_value(img, "magic")
    with pytest.raises(NicheError, match="constant"):
        threshold_value(np.ones((4, 4)))


def test_preprocess_is_smoothing_then_slice_normalisation():
    from napari_niche.core.preprocess import preprocess

    rng = np.random.default_rng(3)
    img = rng.random((6, 20, 20)).astype(np.float32) * np.arange(1, 7)[:, None, None]
    spacing = (2.0, 0.5, 0.5)
    np.testing.assert_allclose(
        preprocess(img, spacing=spacing, sigma_um=1.0, normalize=True),
        normalize_slices(smooth_um(img, 1.0, spacing=spacing)),
    )
    np.testing.assert_allclose(preprocess(img, spacing=spacing), img)
