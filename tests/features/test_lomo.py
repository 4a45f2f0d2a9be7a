"""LOMO against a slow, loop-based numpy reference written from the definitions."""

import colorsys

import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from tfreid.features import LomoConfig, LomoLayer, lomo
from tfreid.features import lomo_ops
from tfreid.features import retinex as rx
from tfreid.features.retinex import gaussian_blur, multiscale_retinex

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- numpy reference (slow loops)

def ref_siltp(grey, tau, radius):
    """grey [H, W] float32 -> codes [H, W]; neighbours outside the image take the edge value."""
    h, w = grey.shape
    lower, upper = np.float32(1 - tau) * grey, np.float32(1 + tau) * grey
    codes = np.zeros((h, w), np.int64)
    for y in range(h):
        for x in range(w):
            neighbours = [(y, min(x + radius, w - 1)), (max(y - radius, 0), x),
                          (y, max(x - radius, 0)), (min(y + radius, h - 1), x)]
            for weight, (ny, nx) in zip((1, 3, 9, 27), neighbours):
                n = grey[ny, nx]
                codes[y, x] += weight * (1 if n < lower[y, x] else 2 if n > upper[y, x] else 0)
    return codes


def ref_max_occurrence(codes, bins, block=10, step=5):
    """codes [H, W] -> [rows, bins]: per row of windows, bin-wise max of window histograms."""
    h, w = codes.shape
    out = []
    for top in range(0, h - block + 1, step):
        hists = [np.bincount(codes[top: top + block, left: left + block].ravel(), minlength=bins)
                 for left in range(0, w - block + 1, step)]
        out.append(np.max(hists, axis=0))
    return np.asarray(out, np.float64)


def ref_pool(a, floor):
    """2x2 average pooling of [H, W, ...], dropping an odd last row/column."""
    h, w = a.shape[0] // 2, a.shape[1] // 2
    out = np.zeros((h, w) + a.shape[2:])
    for y in range(h):
        for x in range(w):
            out[y, x] = a[2 * y: 2 * y + 2, 2 * x: 2 * x + 2].mean(axis=(0, 1))
    return np.floor(out).astype(np.int64) if floor else out


def ref_lomo(hsv_bins, grey, config):
    """Reference LOMO of one image given its per-channel HSV bins [H, W, 3] and grey [H, W].

    Returns (rows [40, 674] before normalisation, flat vector normalised as in the reference).
    """
    groups = [[] for _ in range(1 + len(config.siltp_radii))]
    for scale in range(config.num_scales):
        if scale:
            hsv_bins, grey = ref_pool(hsv_bins, floor=True), ref_pool(grey, floor=False)
        joint = hsv_bins[..., 0] + 8 * hsv_bins[..., 1] + 64 * hsv_bins[..., 2]
        groups[0].append(ref_max_occurrence(joint, 512))
        for i, radius in enumerate(config.siltp_radii):
            codes = ref_siltp(grey.astype(np.float32), config.siltp_tau, radius)
            groups[i + 1].append(ref_max_occurrence(codes, 81))
    groups = [np.log(np.concatenate(g) + 1) for g in groups]
    rows = np.concatenate(groups, axis=1)
    flat = np.concatenate([g.ravel() / np.linalg.norm(g) for g in groups])
    return rows, flat


# ---------------------------------------------------------------- tests

def test_siltp_codes_match_reference_including_borders():
    grey = RNG.uniform(0, 1, (2, 13, 11)).astype(np.float32)
    grey[0, :, 0] = 0.9   # bright left column: border replication matters there
    for radius in (1, 3, 5):
        got = lomo_ops.siltp_codes(tf.constant(grey), 0.3, radius).numpy()
        for b in range(2):
            np.testing.assert_array_equal(got[b], ref_siltp(grey[b], 0.3, radius))


def test_siltp_hand_computed_codes():
    grey = np.full((1, 7, 7), 0.5, np.float32)
    assert np.all(lomo_ops.siltp_codes(tf.constant(grey), 0.3, 3).numpy() == 0)
    grey[0, 3, 6] = 1.0   # bright pixel on the right edge, same row as the centre
    codes = lomo_ops.siltp_codes(tf.constant(grey), 0.3, 3).numpy()[0]
    assert codes[3, 3] == 2            # right neighbour above (1 + tau) I -> 2 * 1
    assert codes[3, 0] == 0            # x+3 = 3 is not the bright pixel
    # Right edge: the right neighbour is the pixel itself (replicated), the left one is 0.5 <
    # 0.7 * 1.0 -> 1 * 9; up/down are 0.5 -> below -> 1 * 3 + 1 * 27.
    assert codes[3, 6] == 9 + 3 + 27


def test_max_occurrence_matches_reference():
    maps = [RNG.integers(0, 7, (2, 23, 17)), RNG.integers(0, 5, (2, 23, 17))]
    got = lomo_ops.max_occurrence([tf.constant(m, tf.int32) for m in maps], [7, 5], 10, 5).numpy()
    assert got.shape == (2, 3, 12)
    for b in range(2):
        want = np.concatenate([ref_max_occurrence(maps[0][b], 7), ref_max_occurrence(maps[1][b], 5)],
                              axis=1)
        np.testing.assert_array_equal(got[b], want)


def test_max_occurrence_other_block_geometry():
    codes = RNG.integers(0, 4, (1, 20, 20))
    got = lomo_ops.max_occurrence([tf.constant(codes, tf.int32)], [4], 6, 2).numpy()[0]
    np.testing.assert_array_equal(got, ref_max_occurrence(codes[0], 4, block=6, step=2))


def test_pooling_matches_reference_with_odd_sizes():
    bins = RNG.integers(0, 8, (1, 9, 7, 3))
    got = lomo_ops.pool_bins(tf.constant(bins, tf.int32)).numpy()[0]
    np.testing.assert_array_equal(got, ref_pool(bins[0], floor=True))
    grey = RNG.uniform(0, 1, (1, 9, 7)).astype(np.float32)
    np.testing.assert_allclose(lomo_ops.pool_grey(tf.constant(grey)).numpy()[0],
                               ref_pool(grey[0], floor=False), rtol=1e-6)


def test_hsv_bins_match_colorsys():
    rgb = RNG.integers(0, 256, (1, 16, 16, 3)).astype(np.float32)
    got = lomo_ops.hsv_bin_maps(tf.constant(rgb / 255.0)).numpy()[0]
    want = np.zeros_like(got)
    for y in range(16):
        for x in range(16):
            hsv = colorsys.rgb_to_hsv(*(rgb[0, y, x] / 255.0))
            want[y, x] = [min(int(c * 8), 7) for c in hsv]
    # float32 vs float64 may flip a value lying exactly on a bin edge by one bin.
    assert np.abs(got - want).max() <= 1
    assert (got != want).mean() < 0.01


def test_grey_and_retinex_match_reference():
    rgb = RNG.uniform(0, 255, (2, 32, 24, 3)).astype(np.float32)
    grey = lomo_ops.grey_image(tf.constant(rgb)).numpy()
    np.testing.assert_allclose(grey, rgb @ np.array([0.2989, 0.5870, 0.1140]) / 255, rtol=1e-5)
    for sigma in (1.5, 5.0, 20.0):
        want = scipy.ndimage.gaussian_filter(rgb.astype(np.float64), (0, sigma, sigma, 0),
                                             mode="nearest", truncate=3.0)
        np.testing.assert_allclose(gaussian_blur(tf.constant(rgb), sigma).numpy(), want,
                                   rtol=1e-4, atol=1e-3)
    got = multiscale_retinex(tf.constant(rgb), (5.0, 20.0), 2.0).numpy()
    log_i = np.log(rgb.astype(np.float64) + 1)
    msr = sum(log_i - np.log(scipy.ndimage.gaussian_filter(rgb.astype(np.float64) + 1,
                                                           (0, s, s, 0), mode="nearest",
                                                           truncate=3.0))
              for s in (5.0, 20.0)) / 2
    mean, std = msr.mean(axis=(1, 2), keepdims=True), msr.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got, np.clip((msr - mean) / (4 * std) + 0.5, 0, 1), atol=1e-4)


@pytest.fixture(scope="module")
def images():
    return RNG.integers(0, 256, (2, 128, 48, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def features(images):
    return lomo(images)


def test_shapes_of_default_config(features):
    config = LomoConfig()
    assert config.rows_per_scale == (24, 11, 5) and config.row_dim == 674
    assert config.flat_dim == 26960
    assert features.rows.shape == (2, 40, 674)
    assert [s.shape[1] for s in features.scales] == [24, 11, 5]
    assert features.flat.shape == (2, 26960)


def test_full_pipeline_matches_reference(images, features):
    config = LomoConfig()
    rgb = tf.cast(images, tf.float32)
    # HSV bins and grey come from the (separately tested) TF ops, so that float32 rounding at
    # bin edges cannot make this comparison flaky; everything after them is the reference.
    hsv = tf.image.rgb_to_hsv(rgb)     # MSRCP: H, S of the input, V of the Retinex
    value = rx.msrcp_value(rgb, config.retinex_sigmas, config.retinex_clip)
    hsv_bins = lomo_ops.quantise_hsv(tf.concat([hsv[..., :2], value], -1)).numpy()
    grey = lomo_ops.grey_image(rgb, config.grey).numpy().astype(np.float64)
    for b in range(len(images)):
        _, want_flat = ref_lomo(hsv_bins[b], grey[b], config)
        # The rounded grey levels put SILTP's tolerance test exactly on its edge for some pixels
        # of the 2x2-pooled scales (float64 mean here, float32 in TF): compare HSV exactly, and
        # SILTP on all but a few bins (the unrounded grey is compared exactly below).
        got = features.flat.numpy()[b]
        np.testing.assert_allclose(got[: 512 * 40], want_flat[: 512 * 40], rtol=1e-5, atol=1e-6)
        siltp_got, siltp_want = got[512 * 40:], want_flat[512 * 40:]
        far = np.abs(siltp_got - siltp_want) > 1e-3 * np.abs(siltp_want) + 1e-6
        assert far.mean() < 0.02
    float_grey = lomo(images, grey="float").flat.numpy()
    grey = lomo_ops.grey_image(rgb, "float").numpy().astype(np.float64)
    for b in range(len(images)):
        _, want_flat = ref_lomo(hsv_bins[b], grey[b], config)
        np.testing.assert_allclose(float_grey[b], want_flat, rtol=1e-5, atol=1e-6)


def test_normalisation_modes(images, features):
    flat = features.flat.numpy()
    sizes = [512 * 40, 81 * 40, 81 * 40]
    for part in np.split(flat, np.cumsum(sizes)[:-1], axis=1):
        np.testing.assert_allclose(np.linalg.norm(part, axis=1), 1.0, rtol=1e-5)
    raw = lomo(images, normalize="none").rows.numpy()
    row = lomo(images, normalize="row").rows.numpy()
    for start, size in ((0, 512), (512, 81), (593, 81)):
        block = raw[..., start: start + size]
        np.testing.assert_allclose(row[..., start: start + size],
                                   block / np.linalg.norm(block, axis=-1, keepdims=True), rtol=1e-5)
        np.testing.assert_allclose(features.rows.numpy()[..., start: start + size],
                                   block / np.linalg.norm(block, axis=(1, 2), keepdims=True),
                                   rtol=1e-5)
    # log(x + 1) of window counts: a 10x10 window holds 100 pixels.
    assert raw.min() >= 0 and raw.max() <= np.log(101) + 1e-6


def test_joint_siltp_group_normalises_hsv_and_all_siltp_separately(images):
    raw = lomo(images, normalize="none").rows.numpy()
    joint = lomo(images, siltp_groups="joint").rows.numpy()
    for start, size in ((0, 512), (512, 162)):  # HSV, then both SILTP radii together
        block = raw[..., start: start + size]
        np.testing.assert_allclose(joint[..., start: start + size],
                                   block / np.linalg.norm(block, axis=(1, 2), keepdims=True),
                                   rtol=1e-5)


def test_any_size_and_dtype_input(images, features):
    np.testing.assert_allclose(lomo(images.astype(np.float32)).flat.numpy(),
                               features.flat.numpy(), atol=1e-6)
    other = RNG.integers(0, 256, (3, 97, 41, 3)).astype(np.uint8)
    assert lomo(other).rows.shape == (3, 40, 674)


def test_eager_tf_function_tf_data_and_keras_agree(images, features):
    want = features.rows.numpy()
    graph = tf.function(lambda x: lomo(x).rows)(tf.constant(images))
    np.testing.assert_allclose(graph.numpy(), want, atol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2).map(lambda x: lomo(x).rows)
    np.testing.assert_allclose(next(iter(dataset)).numpy(), want, atol=1e-6)
    inputs = keras.Input((None, None, 3), dtype="uint8")
    model = keras.Model(inputs, LomoLayer(output="rows")(inputs))
    np.testing.assert_allclose(model.predict(images, verbose=0), want, atol=1e-6)
    flat_model = keras.Sequential([keras.Input((128, 48, 3)), LomoLayer(output="flat")])
    np.testing.assert_allclose(flat_model(images.astype(np.float32)).numpy(),
                               features.flat.numpy(), atol=1e-6)


def test_layer_config_round_trip(tmp_path):
    layer = LomoLayer(output="flat", normalize="row", siltp_radii=(3,))
    clone = LomoLayer.from_config(layer.get_config())
    assert clone.config == layer.config and clone.output_mode == "flat"
    assert clone.compute_output_shape((None, 128, 48, 3)) == (None, 40 * (512 + 81))
    inputs = keras.Input((128, 48, 3))
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / "lomo.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = RNG.uniform(0, 255, (1, 128, 48, 3)).astype(np.float32)
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"siltp_groups": "both"}, "siltp_groups"),
    (dict(block_size=7, block_step=5), "multiple"),
    (dict(normalize="max"), "normalize"),
    (dict(num_scales=5), "smaller than block_size"),
    (dict(hsv_bins=(8, 8)), "hsv_bins"),
    (dict(siltp_tau=1.5), "siltp_tau"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LomoConfig(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[batch, height, width, 3\]"):
        lomo(np.zeros((128, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="output"):
        LomoLayer(output="both")


# ---------------------------------------------------------------- faithful-LOMO options

def ref_simplest_color_balance(x, clip):
    """x [H, W] -> [0, 1]: order statistics floor(clip n) and n-1-floor(clip n) map to 0 and 1."""
    values = np.sort(x.ravel())
    k = int(np.floor(clip * values.size))
    low, high = values[k], values[values.size - 1 - k]
    return np.clip((x - low) / max(high - low, 1e-6), 0, 1)


def ref_msr(x, sigmas):
    return sum(np.log(x + 1) - np.log(scipy.ndimage.gaussian_filter(x + 1, s, mode="nearest",
                                                                    truncate=3.0))
               for s in sigmas) / len(sigmas)


def test_simplest_color_balance_matches_reference():
    x = RNG.normal(0, 1, (2, 20, 10, 3)).astype(np.float32)
    got = rx.simplest_color_balance(tf.constant(x), 0.05).numpy()
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(got[b, ..., c], ref_simplest_color_balance(x[b, ..., c], 0.05),
                                       atol=1e-5)
    # 5% of 200 values = 10 saturate at each end.
    assert (got[..., 0] == 0).sum(axis=(1, 2)).tolist() == [11, 11]
    assert (got[..., 0] == 1).sum(axis=(1, 2)).tolist() == [11, 11]
    with pytest.raises(ValueError, match="clip"):
        rx.simplest_color_balance(tf.constant(x), 0.5)


def test_msrcp_preserves_chromaticity_and_matches_reference():
    rgb = RNG.uniform(1, 255, (2, 32, 24, 3)).astype(np.float32)
    got = rx.retinex(tf.constant(rgb), "msrcp", (5.0, 20.0), clip=0.01).numpy()
    # Every channel of a pixel is scaled by the same factor: hue and saturation unchanged.
    lit = got.sum(-1) > 0.05
    assert lit.mean() > 0.9
    np.testing.assert_allclose((got / got.sum(-1, keepdims=True))[lit],
                               (rgb / rgb.sum(-1, keepdims=True))[lit], atol=1e-4)
    assert got.min() >= 0 and got.max() <= 1
    for b in range(2):
        x = rgb[b].astype(np.float64)
        intensity = x.mean(-1)
        out = 255 * ref_simplest_color_balance(ref_msr(intensity, (5.0, 20.0)), 0.01)
        factor = np.minimum(255 / x.max(-1), out / intensity)
        np.testing.assert_allclose(got[b], np.clip(factor[..., None] * x / 255, 0, 1), atol=2e-3)
    # LOMO takes H, S from the input and V from msrcp_value: the same as the image's HSV.
    value = rx.msrcp_value(tf.constant(rgb), (5.0, 20.0), 0.01).numpy()
    np.testing.assert_allclose(value[..., 0], got.max(-1), atol=1e-5)
    # MSRCP changes the image (it is not the identity), and differs from the legacy stretch.
    assert np.abs(got - rgb / 255).mean() > 0.02
    legacy = rx.retinex(tf.constant(rgb), "msr_stretch", (5.0, 20.0)).numpy()
    assert np.abs(got - legacy).mean() > 0.02


def test_msrcr_matches_reference():
    rgb = RNG.uniform(0, 255, (1, 32, 24, 3)).astype(np.float32)
    got = rx.retinex(tf.constant(rgb), "msrcr", (5.0, 20.0), clip=0.01).numpy()[0]
    x = rgb[0].astype(np.float64)
    msr = np.stack([ref_msr(x[..., c], (5.0, 20.0)) for c in range(3)], -1)
    restored = (np.log(125 * (x + 1)) - np.log((x + 1).sum(-1, keepdims=True))) * msr
    for c in range(3):
        np.testing.assert_allclose(got[..., c], ref_simplest_color_balance(restored[..., c], 0.01),
                                   atol=2e-3)


def test_grey_uint8_is_matlab_rgb2gray():
    rgb = RNG.integers(0, 256, (2, 16, 8, 3)).astype(np.float32)
    got = lomo_ops.grey_image(tf.constant(rgb), "uint8").numpy() * 255
    want = np.floor(rgb.astype(np.float64) @ np.array(lomo_ops.MATLAB_GREY_WEIGHTS) + 0.5)
    assert np.abs(got - want).max() < 1e-3          # integer levels
    np.testing.assert_allclose(got, np.round(got), atol=1e-3)
    unrounded = lomo_ops.grey_image(tf.constant(rgb), "float").numpy() * 255
    assert 0.1 < np.abs(unrounded - got).mean() < 0.5


def test_retinex_and_grey_options_change_lomo(images):
    default = lomo(images).flat.numpy()
    config = LomoConfig()
    assert (config.retinex, config.grey) == ("msrcp", "uint8")
    legacy = lomo(images, **lomo_ops.LEGACY_SETTINGS).flat.numpy()
    hsv = slice(0, 512 * 40)
    siltp = slice(512 * 40, None)
    assert np.abs(default[:, hsv] - legacy[:, hsv]).max() > 1e-3
    # The grey option only touches SILTP, the Retinex option only HSV.
    grey_only = lomo(images, grey="float").flat.numpy()
    np.testing.assert_allclose(grey_only[:, hsv], default[:, hsv], atol=1e-6)
    np.testing.assert_allclose(grey_only[:, siltp], legacy[:, siltp], atol=1e-6)
    retinex_only = lomo(images, retinex="msr_stretch").flat.numpy()
    np.testing.assert_allclose(retinex_only[:, hsv], legacy[:, hsv], atol=1e-6)
    np.testing.assert_allclose(retinex_only[:, siltp], default[:, siltp], atol=1e-6)
    graph = tf.function(lambda x: lomo(x, retinex="msrcr").flat)(tf.constant(images))
    # (float32 rounding may move a value lying on a bin edge: close, not equal)
    assert np.abs(graph.numpy() - lomo(images, retinex="msrcr").flat.numpy()).mean() < 1e-4


def test_layer_config_without_new_keys_loads_legacy_settings():
    old = LomoLayer(output="rows").get_config()
    for key in ("retinex", "retinex_clip", "grey"):
        old.pop(key)
    layer = LomoLayer.from_config(old)
    assert (layer.config.retinex, layer.config.grey) == ("msr_stretch", "float")
    assert LomoLayer.from_config(LomoLayer().get_config()).config == LomoConfig()
    x = RNG.uniform(0, 255, (1, 128, 48, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(x).numpy(), lomo(x, **lomo_ops.LEGACY_SETTINGS).rows.numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(retinex="gimp"), "retinex"),
    (dict(retinex_clip=0.6), "retinex_clip"),
    (dict(grey="int"), "grey"),
])
def test_bad_new_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LomoConfig(**kwargs)
