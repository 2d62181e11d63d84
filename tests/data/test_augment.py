"""On-device augmentation against Keras's ImageDataGenerator, image by image."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats

from jaxtransfer.data import augment, preprocess

legacy_image = pytest.importorskip("keras.src.legacy.preprocessing.image")

HEIGHT, WIDTH = 24, 32  # non-square on purpose: the two Keras conventions differ
STUDY_KWARGS = dict(
    rotation_range=10,
    width_shift_range=0.1,
    height_shift_range=0.1,
    shear_range=0.1,
    zoom_range=0.1,
    fill_mode="nearest",
    horizontal_flip=True,
)
# float32 bilinear vs scipy's float64 (stored as float32), 0..255 noise images whose
# neighbours differ by up to 255: coordinate rounding of ~1e-5 px gives ~1e-3.
# Measured: 1.4e-3 (keras3 vs Keras 3), 1.1e-3 (study vs keras-preprocessing 1.1.2).
ATOL = 5e-3


def _images(batch: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, HEIGHT, WIDTH, 3)).astype(np.float32)


def _keras_dict(params: augment.AffineParams, i: int) -> dict:
    """Image ``i``'s parameters as Keras's ``transform_parameters`` dict."""
    return {
        "theta": float(params.theta[i]),
        "tx": float(params.tx[i]),
        "ty": float(params.ty[i]),
        "shear": float(params.shear[i]),
        "zx": float(params.zx[i]),
        "zy": float(params.zy[i]),
        "flip_horizontal": bool(params.flip[i]),
    }


def _params(batch: int = 1, **values) -> augment.AffineParams:
    defaults = dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0, flip=False)
    defaults.update(values)
    return augment.AffineParams(
        **{k: np.full((batch,), v) for k, v in defaults.items()}
    )


def _keras3(x: np.ndarray, params: augment.AffineParams) -> np.ndarray:
    """The installed Keras 3's own ``apply_transform``, per image."""
    generator = legacy_image.ImageDataGenerator(**STUDY_KWARGS)
    return np.stack(
        [generator.apply_transform(x[i], _keras_dict(params, i)) for i in range(len(x))]
    )


def _keras_preprocessing_112(x: np.ndarray, params: augment.AffineParams) -> np.ndarray:
    """keras-preprocessing 1.1.2 (TF 2.8, the study), transcribed line by line.

    ``apply_affine_transform`` + ``transform_matrix_offset_center`` of that release:
    matrix on (row, col) without the x/y swap, centre ``size / 2 + 0.5``, scipy
    order 1 'nearest' per channel in float64 (written back as float32), then the
    column flip.
    """
    out = []
    for i in range(len(x)):
        p = _keras_dict(params, i)
        theta, shear = np.deg2rad(p["theta"]), np.deg2rad(p["shear"])
        rotation = np.array(
            [
                [np.cos(theta), -np.sin(theta), 0],
                [np.sin(theta), np.cos(theta), 0],
                [0, 0, 1],
            ]
        )
        shift = np.array([[1, 0, p["tx"]], [0, 1, p["ty"]], [0, 0, 1]])
        shearing = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
        zoom = np.array([[p["zx"], 0, 0], [0, p["zy"], 0], [0, 0, 1]])
        matrix = rotation @ shift @ shearing @ zoom
        o_x, o_y = HEIGHT / 2 + 0.5, WIDTH / 2 + 0.5
        offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
        reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
        matrix = offset @ matrix @ reset
        channels = [
            scipy.ndimage.affine_transform(
                x[i, :, :, c], matrix[:2, :2], matrix[:2, 2], order=1, mode="nearest"
            )
            for c in range(x.shape[-1])
        ]
        image = np.stack(channels, axis=-1)
        out.append(image[:, ::-1] if p["flip_horizontal"] else image)
    return np.stack(out)


ORACLES = {"keras3": _keras3, "keras_preprocessing": _keras_preprocessing_112}


@pytest.mark.parametrize("convention", sorted(ORACLES))
def test_sampled_batch_matches_keras(convention):
    x = _images(32)
    config = augment.AugmentConfig(convention=convention)
    params = augment.sample_params(
        jax.random.key(1), 32, config, height=HEIGHT, width=WIDTH
    )
    assert bool(params.flip.any()) and not bool(params.flip.all())
    got = np.asarray(augment.apply(x, params, convention))
    want = ORACLES[convention](x, params)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    # Not vacuous: the images really moved.
    assert np.abs(want - x).mean() > 10


def test_study_convention_matches_real_keras_preprocessing():
    """The transcription above against the released 1.1.2 package, when present."""
    kp = pytest.importorskip("keras_preprocessing.image")
    generator = kp.ImageDataGenerator(**STUDY_KWARGS)
    x = _images(16, seed=3)
    params = augment.sample_params(
        jax.random.key(4), 16, augment.AugmentConfig(), height=HEIGHT, width=WIDTH
    )
    want = np.stack(
        [generator.apply_transform(x[i], _keras_dict(params, i)) for i in range(16)]
    )
    np.testing.assert_allclose(_keras_preprocessing_112(x, params), want, atol=1e-4)
    np.testing.assert_allclose(np.asarray(augment.apply(x, params)), want, atol=ATOL)


EDGE_CASES = {
    "rotation_10": dict(theta=10.0),
    "rotation_minus_10": dict(theta=-10.0),
    "integer_shift": dict(tx=3.0, ty=-4.0),  # sample points exactly on the grid
    "shift_past_edge": dict(tx=-2.4, ty=3.2),
    "fractional_shift": dict(tx=0.37, ty=-1.61),
    "zoom_in": dict(zx=0.9, zy=0.93),
    "zoom_out_fills": dict(zx=1.1, zy=1.08),
    "zoom_out_far": dict(zx=1.6, zy=1.4),  # a wide band clamped to the edges
    "shear_large": dict(shear=20.0),  # the study's 0.1 degrees would test nothing
    "flip_only": dict(flip=True),
    "everything": dict(theta=-7.5, tx=1.3, ty=-2.2, shear=5.0, zx=1.07, zy=0.91),
    "identity": dict(),
}


@pytest.mark.parametrize("convention", sorted(ORACLES))
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_match_keras(case, convention):
    x = _images(1, seed=5)
    params = _params(**EDGE_CASES[case])
    got = np.asarray(augment.apply(x, params, convention))
    np.testing.assert_allclose(got, ORACLES[convention](x, params), rtol=0, atol=ATOL)


def test_identity_and_flip_are_exact():
    x = _images(2, seed=6)
    np.testing.assert_array_equal(np.asarray(augment.apply(x, _params(2))), x)
    flipped = np.asarray(augment.apply(x, _params(2, flip=True)))
    np.testing.assert_array_equal(flipped, x[:, :, ::-1])


def test_conventions_differ_as_documented():
    """Keras 3 = the study's transform under tx<->ty, zx<->zy, theta->-theta, up to
    the one-pixel pivot, which a pure shift does not see."""
    x = _images(1, seed=7)
    shift = np.asarray(augment.apply(x, _params(tx=2.0), "keras3"))
    np.testing.assert_allclose(shift, np.asarray(augment.apply(x, _params(ty=2.0))))
    rotated = np.asarray(augment.apply(x, _params(theta=10.0), "keras3"))
    study = np.asarray(augment.apply(x, _params(theta=10.0)))
    assert np.abs(rotated - study).max() > 50


def _keras_draws(num: int, seed: int) -> dict[str, np.ndarray]:
    generator = legacy_image.ImageDataGenerator(**STUDY_KWARGS)
    np.random.seed(seed)
    draws = [generator.get_random_transform((HEIGHT, WIDTH, 3)) for _ in range(num)]
    return {
        key: np.array([d[key] for d in draws], np.float64)
        for key in ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal")
    }


def test_sampler_distributions_match_keras():
    num = 2000
    ours = augment.sample_params(
        jax.random.key(11), num, augment.AugmentConfig(), height=HEIGHT, width=WIDTH
    )
    ours = {k: np.asarray(v, np.float64) for k, v in ours._asdict().items()}
    ours["flip_horizontal"] = ours.pop("flip")
    keras = _keras_draws(num, seed=12)
    bounds = {
        "theta": (-10.0, 10.0),
        "tx": (-0.1 * HEIGHT, 0.1 * HEIGHT),  # Keras: times img_shape[row_axis]
        "ty": (-0.1 * WIDTH, 0.1 * WIDTH),
        "shear": (-0.1, 0.1),  # degrees
        "zx": (0.9, 1.1),
        "zy": (0.9, 1.1),
        "flip_horizontal": (0.0, 1.0),
    }
    for key, (low, high) in bounds.items():
        a, b = ours[key], keras[key]
        span = high - low
        for draws in (a, b):
            assert draws.min() >= low and draws.max() <= high, key
            assert draws.min() < low + 0.01 * span, key
            assert draws.max() > high - 0.01 * span, key
        # Means of U(low, high) or Bernoulli(0.5): sd of the mean <= span / sqrt(12 n)
        # (uniform) or 0.5 / sqrt(n) (flip); allow 4 sd for the difference of two.
        tolerance = 4 * np.sqrt(2) * span * 0.5 / np.sqrt(num)
        assert abs(a.mean() - b.mean()) < tolerance, key
        assert abs(a.mean() - (low + high) / 2) < tolerance, key
        assert abs(a.std() - b.std()) < 0.05 * span, key
        if key != "flip_horizontal":
            assert scipy.stats.ks_2samp(a, b).pvalue > 1e-3, key
    # zx and zy are independent draws, not one shared factor.
    assert abs(np.corrcoef(ours["zx"], ours["zy"])[0, 1]) < 0.1
    assert np.all(np.abs(ours["shear"]) <= 0.1)


def test_jit_vmap_and_rng_semantics():
    x = jnp.asarray(_images(4, seed=8))
    config = augment.AugmentConfig()
    step = jax.jit(augment.augment, static_argnums=2)
    key, other_key = jax.random.key(0), jax.random.key(1)
    # No implicit host<->device copies inside the step (compilation included).
    with jax.transfer_guard("disallow"):
        first = step(key, x, config)
        again = step(key, x, config)
        other = step(other_key, x, config)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert np.abs(np.asarray(first) - np.asarray(other)).max() > 1
    np.testing.assert_allclose(
        np.asarray(first), np.asarray(augment.augment(key, x, config)), atol=1e-3
    )

    # vmap over members (e.g. an ensemble), each with its own key and images.
    keys = jax.random.split(jax.random.key(2), 3)
    stacked = jnp.stack([x, x + 1.0, x * 0.5])  # (members, B, H, W, C)
    batched = jax.jit(jax.vmap(lambda k, im: augment.augment(k, im, config)))
    out = np.asarray(batched(keys, stacked))
    for m in range(3):
        np.testing.assert_allclose(
            out[m], np.asarray(step(keys[m], stacked[m], config)), atol=1e-3
        )

    p1 = augment.sample_params(key, 8, config, height=HEIGHT, width=WIDTH)
    p2 = augment.sample_params(jax.random.key(1), 8, config, height=HEIGHT, width=WIDTH)
    for name in ("theta", "tx", "ty", "shear", "zx", "zy"):
        assert not np.allclose(getattr(p1, name), getattr(p2, name)), name


def test_no_flip_for_chest():
    chest = augment.config_for_target("chest")
    assert not chest.horizontal_flip
    assert augment.config_for_target("isic").horizontal_flip
    params = augment.sample_params(
        jax.random.key(3), 512, chest, height=HEIGHT, width=WIDTH
    )
    assert not bool(params.flip.any())
    flipping = augment.sample_params(
        jax.random.key(3), 512, augment.AugmentConfig(), height=HEIGHT, width=WIDTH
    )
    assert 0.4 < float(flipping.flip.mean()) < 0.6
    # Same key, flip disabled: everything else is drawn identically.
    np.testing.assert_array_equal(np.asarray(params.theta), np.asarray(flipping.theta))


def test_augment_then_caffe():
    x = jnp.asarray(_images(2, seed=9))
    config = augment.AugmentConfig()
    key = jax.random.key(5)
    got = augment.augment_and_preprocess(key, x, config)
    want = preprocess.caffe(augment.augment(key, x, config))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)


def test_config_validation_and_zero_ranges():
    with pytest.raises(ValueError):
        augment.AugmentConfig(width_shift_range=5.0)
    with pytest.raises(ValueError):
        augment.AugmentConfig(convention="tf")
    assert augment.AugmentConfig(zoom_range=(0.8, 1.2)).zoom_bounds == (0.8, 1.2)
    still = dataclasses.replace(
        augment.AugmentConfig(),
        rotation_range=0.0,
        width_shift_range=0.0,
        height_shift_range=0.0,
        shear_range=0.0,
        zoom_range=0.0,
        horizontal_flip=False,
    )
    x = _images(3, seed=10)
    out = augment.augment(jax.random.key(0), jnp.asarray(x), still)
    np.testing.assert_array_equal(np.asarray(out), x)
