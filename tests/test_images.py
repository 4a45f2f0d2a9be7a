"""tfreid.images: the pixels of every reader equal PIL's; bad files are named; the pixel contract."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfreid import images


def _photo(height=37, width=23, seed=0):
    """A smooth colour image with texture (JPEG's IDCT differences show on such content)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    base = np.stack([120 + 80 * np.sin(x / 5.0), 100 + 90 * np.cos(y / 7.0), 60 + 3 * x + 2 * y], -1)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def _write(path, pil_image, **kwargs):
    pil_image.save(path, **kwargs)
    return str(path)


def _samples(folder):
    """One file per format and mode that users' cameras and datasets produce."""
    rgb = _photo()
    grey16 = (np.arange(37 * 23, dtype=np.uint32).reshape(37, 23) * 71 % 65536).astype(np.uint16)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 90, np.uint8)], -1)
    files = {
        "jpeg_q95": _write(folder / "a.jpg", Image.fromarray(rgb), quality=95),
        "jpeg_q60_420": _write(folder / "b.jpg", Image.fromarray(_photo(64, 32, 1)), quality=60),
        "jpeg_grey": _write(folder / "c.jpg", Image.fromarray(rgb[..., 0]), quality=90),
        "png_rgb": _write(folder / "d.png", Image.fromarray(rgb)),
        "png_grey": _write(folder / "e.png", Image.fromarray(rgb[..., 1])),
        "png_rgba": _write(folder / "f.png", Image.fromarray(rgba)),
        "png_palette": _write(folder / "g.png", Image.fromarray(rgb).quantize(64)),
        "png_grey16": _write(folder / "h.png", Image.fromarray(grey16)),
        "bmp_rgb": _write(folder / "i.bmp", Image.fromarray(rgb)),
        "gif": _write(folder / "j.gif", Image.fromarray(rgb).quantize(128)),
        "tiff": _write(folder / "k.tif", Image.fromarray(rgb)),
        "webp_lossless": _write(folder / "l.webp", Image.fromarray(rgb), lossless=True),
    }
    # 16-bit colour PNG: PIL does not write one; OpenCV (a dependency) does.
    import cv2
    rgb16 = (rgb.astype(np.uint16) * 257 + np.arange(23, dtype=np.uint16)[None, :, None])
    files["png_rgb16"] = str(folder / "m.png")
    assert cv2.imwrite(files["png_rgb16"], rgb16[..., ::-1])
    return files


def _pil_pixels(path):
    """What a user's code gets from PIL (with the one documented 16-bit grey departure)."""
    with Image.open(path) as image:
        if image.mode.startswith("I;16"):
            high = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
            return np.repeat(high[..., None], 3, -1)
        return np.asarray(image.convert("RGB"))


def test_read_image_equals_pil_for_every_format(tmp_path):
    for kind, path in _samples(tmp_path).items():
        ours = images.read_image(path)
        assert ours.dtype == np.uint8 and ours.ndim == 3 and ours.shape[-1] == 3, kind
        np.testing.assert_array_equal(ours, _pil_pixels(path), err_msg=kind)


def test_grey16_keeps_the_high_byte_where_pil_would_clip(tmp_path):
    values = np.array([[0, 255, 256, 40000, 65535]], np.uint16)
    path = _write(tmp_path / "g16.png", Image.fromarray(values))
    ours = images.read_image(path)[..., 0]
    np.testing.assert_array_equal(ours, [[0, 0, 1, 156, 255]])
    with Image.open(path) as image:   # the PIL behaviour this departs from, so it stays deliberate
        assert np.asarray(image.convert("RGB"))[0, 1:, 0].tolist() == [255, 255, 255, 255]


def test_opencv_reads_the_same_pixels(tmp_path):
    cv2 = pytest.importorskip("cv2")
    for kind, path in _samples(tmp_path).items():
        if kind in ("gif", "png_grey16", "png_rgb16", "webp_lossless", "png_rgba"):
            continue   # OpenCV has no GIF reader; 16-bit, WebP and alpha differ by its own rules
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(images.read_image(path), bgr[..., ::-1], err_msg=kind)


@pytest.mark.parametrize("kind", ["jpeg_q95", "jpeg_q60_420", "jpeg_grey", "png_rgb", "png_grey",
                                  "png_rgba", "png_palette", "png_grey16", "png_rgb16", "bmp_rgb",
                                  "gif"])
def test_graph_decoder_equals_pil(tmp_path, kind):
    path = _samples(tmp_path)[kind]
    contents = open(path, "rb").read()
    decoded = tf.function(images.decode_encoded)(tf.constant(contents)).numpy()
    np.testing.assert_array_equal(decoded, images.read_image(path), err_msg=kind)


def test_graph_decoder_reads_bmp_with_trailing_bytes_and_top_down_rows(tmp_path):
    rgb = _photo(9, 5)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "BMP")
    data = bytearray(buffer.getvalue())
    padded = bytes(data) + b"\0\0"          # as VIPeR's files: TensorFlow's own decoder rejects them
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_bmp(padded)
    np.testing.assert_array_equal(images.decode_encoded(tf.constant(padded)).numpy(), rgb)
    # top-down: negative height, rows stored first to last
    height = 9
    data[22:26] = (-height).to_bytes(4, "little", signed=True)
    offset = int.from_bytes(data[10:14], "little")
    row = (24 * 5 + 31) // 32 * 4
    rows = [bytes(data[offset + r * row: offset + (r + 1) * row]) for r in range(height)]
    data[offset:offset + row * height] = b"".join(reversed(rows))
    np.testing.assert_array_equal(images.decode_encoded(tf.constant(bytes(data))).numpy(), rgb)


def test_jpeg_fast_idct_is_what_we_avoid(tmp_path):
    path = _samples(tmp_path)["jpeg_q60_420"]
    contents = open(path, "rb").read()
    fast = tf.io.decode_jpeg(contents, channels=3).numpy()
    assert np.abs(fast.astype(int) - images.read_image(path).astype(int)).max() > 0


def test_tf_read_image_in_a_dataset(tmp_path):
    files = _samples(tmp_path)
    paths = [files["jpeg_q95"], files["bmp_rgb"]]
    ds = tf.data.Dataset.from_tensor_slices(paths).map(images.tf_read_image)
    for path, decoded in zip(paths, ds):
        np.testing.assert_array_equal(decoded.numpy(), images.read_image(path))


def _bad_files(folder):
    good = _write(folder / "good.jpg", Image.fromarray(_photo()), quality=90)
    whole = open(good, "rb").read()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "text.png").write_text("not an image at all")
    png = io.BytesIO()
    Image.fromarray(_photo()).save(png, "PNG")
    (folder / "truncated.png").write_bytes(png.getvalue()[:200])
    return good, {"empty.jpg": "empty file", "truncated.jpg": "cannot be decoded",
                  "text.png": "not an image", "truncated.png": "cannot be decoded"}


def test_find_unreadable_names_every_bad_file_and_why(tmp_path):
    good, expected = _bad_files(tmp_path)
    paths = [good] + [str(tmp_path / name) for name in expected] + [str(tmp_path / "gone.jpg")]
    seen = []
    bad = images.find_unreadable(paths, progress=seen.append)
    assert [b.path for b in bad] == paths[1:]
    for b in bad[:-1]:
        assert expected[b.path.rsplit("/", 1)[-1]] in b.reason, (b.path, b.reason)
    assert bad[-1].reason == "missing"
    assert seen[-1] == len(paths)
    error = images.BadImagesError(bad, len(paths), "train split")
    assert "5 of 6 images of the train split" in str(error) and "--skip_bad_images" in str(error)
    assert all(b.path in str(error) for b in bad)


def test_read_image_errors_name_the_file(tmp_path):
    _, expected = _bad_files(tmp_path)
    for name in expected:
        with pytest.raises(images.UnreadableImageError, match=name):
            images.read_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        images.read_image(tmp_path / "gone.jpg")
    with pytest.raises(images.UnreadableImageError, match="query.jpg: empty"):
        images.decode_bytes(b"", "query.jpg")


def test_check_pixels_contract():
    images.check_pixels([np.zeros((4, 3, 3), np.uint8), np.full((2, 2, 3), 255.0)])
    images.check_pixels(np.zeros((2, 4, 3, 3), np.float32))          # black float images pass
    nan = np.full((4, 3, 3), 10.0)
    nan[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"images\[1\]: contains NaN"):
        images.check_pixels([np.zeros((4, 3, 3)), nan])
    with pytest.raises(ValueError, match=r"\[0, 1\].*multiply by 255"):
        images.check_pixels([np.random.default_rng(0).random((4, 3, 3))])
    with pytest.raises(ValueError, match="outside 0..255"):
        images.check_pixels([np.full((4, 3, 3), 300.0)])
    with pytest.raises(ValueError, match="outside 0..255"):
        images.check_pixels([np.full((4, 3, 3), -1, np.int32)])
    with pytest.raises(ValueError, match=r"\[h, w, 3\]"):
        images.check_pixels([np.zeros((4, 3), np.uint8)])


def test_resize_is_identity_at_the_same_size_and_clips():
    image = _photo(16, 8)
    np.testing.assert_array_equal(images.resize(image, (16, 8)).numpy(), image.astype(np.float32))
    out = images.resize(tf.constant(image[None]), (32, 16)).numpy()
    assert out.shape == (1, 32, 16, 3) and out.min() >= 0 and out.max() <= 255
