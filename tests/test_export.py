"""Serving pipeline and export: SavedModel parity in a fresh TensorFlow-only process,
saved_model_cli, export -> reload round trip, ONNX parity."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfreid import export
from tfreid.features import ColorNamesLayer, LomoLayer
from tfreid.models import build_stripe_lstm, build_stripe_mlp
from tfreid.serving import EmbeddingModel, load_keras_model, model_branches
from tfreid.experiments.stripes import build_deploy_model


def tiny_stripe_model(channels=("lomo", "cn")):
    """A small two-channel stripe deploy model (random weights, random w2c table)."""
    rng = np.random.default_rng(0)
    layers, heads = {}, {}
    if "lomo" in channels:
        layers["lomo"] = LomoLayer(output="rows", normalize="row", name="lomo", height=32, width=24,
                                   block_size=8, block_step=4, num_scales=2, siltp_radii=(1, 2),
                                   hsv_bins=(4, 4, 4))
        cfg = layers["lomo"].config
        heads["lomo"] = build_stripe_lstm(cfg.num_rows, cfg.row_dim, 4, scales=cfg.rows_per_scale,
                                          seed=0, name="lomo_embedding")
    if "cn" in channels:
        table = rng.random((32768, 11)).astype(np.float32)
        table /= table.sum(1, keepdims=True)
        layers["cn"] = ColorNamesLayer(table, rng.random((6, 11)).astype(np.float32), height=32,
                                       width=16, num_stripes=4, name="cn")
        heads["cn"] = build_stripe_mlp(4, 6, 1, hidden_units=3, seed=0, name="cn_embedding")
    return build_deploy_model(layers, heads)


@pytest.fixture(scope="module")
def stripe_model():
    return tiny_stripe_model()


@pytest.fixture(scope="module")
def cnn_model(tiny_cnn):
    return tiny_cnn()


@pytest.fixture(scope="module")
def exported(stripe_model, cnn_model, tmp_path_factory):
    """{kind: version folder}: the stripe model is exported after a .keras save -> load."""
    base = tmp_path_factory.mktemp("serving")
    stripe_model.save(base / "m.keras")
    return {"stripe": export.export_saved_model(load_keras_model(base / "m.keras"), base, "stripe"),
            "cnn": export.export_saved_model(EmbeddingModel(cnn_model), base, "cnn")}


def images(seed=1, sizes=((50, 22), (40, 30), (32, 24))):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for h, w in sizes]


def reference_embedding(model, image):
    """Slow obvious reference: the Keras model on one image, channels normalised by hand."""
    size = tuple(model.inputs[0].shape[1:3])
    if None not in size:  # CNN: fixed input size
        vec = model(tf.image.resize(image[None].astype(np.float32), size, antialias=True)).numpy()[0]
        return vec / np.linalg.norm(vec)
    out = model(image[None].astype(np.float32), training=False)
    parts = [out[c].numpy()[0] / np.linalg.norm(out[c].numpy()[0]) for c in sorted(out)]
    return np.concatenate(parts) / np.sqrt(len(parts))


def test_branches(stripe_model, cnn_model):
    names = [(b.name, b.size, b.dim) for b in model_branches(stripe_model)]
    assert names == [("cn", (32, 16), 12), ("lomo", (32, 24), 4 * 10)]
    assert [(b.name, b.size, b.dim) for b in model_branches(cnn_model)] == [("embedding", (64, 32), 16)]


def test_embed_matches_keras_per_image(stripe_model, cnn_model):
    for model in (stripe_model, cnn_model):
        em = EmbeddingModel(model)
        got = em.embed(images(), batch_size=2)
        assert got.dtype == np.float32 and got.shape == (3, em.dim)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
        for i, image in enumerate(images()):
            np.testing.assert_allclose(got[i], reference_embedding(model, image), atol=1e-5)


def test_squared_distance_is_mean_of_channel_distances(stripe_model):
    em = EmbeddingModel(stripe_model)
    emb, raw = em.embed(images(), with_raw=True)
    unit = {c: v / np.linalg.norm(v, axis=1, keepdims=True) for c, v in raw.items()}
    expected = np.mean([np.sum((u[0] - u[1]) ** 2) for u in unit.values()])
    assert np.sum((emb[0] - emb[1]) ** 2) == pytest.approx(expected, rel=1e-5)


def test_embed_rank_and_bad_inputs(stripe_model):
    em = EmbeddingModel(stripe_model)
    batch = np.stack([images()[2]] * 2)
    np.testing.assert_allclose(em.embed(batch), em.embed(list(batch)), atol=1e-6)
    gallery = images(seed=5) + [images()[0]]
    idx, dist = em.rank([images()[0]], gallery, top_k=2)
    assert idx.shape == (1, 2) and idx[0, 0] == 3 and dist[0, 0] == pytest.approx(0, abs=1e-3)
    assert dist[0, 0] <= dist[0, 1]
    with pytest.raises(ValueError, match="one image"):
        em.embed(images()[0])
    with pytest.raises(ValueError, match=r"images\[0\].*shape"):
        em.embed([np.zeros((5, 5), np.uint8)])
    with pytest.raises(ValueError, match="top_k"):
        em.rank(images(), images(), top_k=0)


def test_not_a_tfreid_model():
    import keras
    x = keras.Input((None, None, 3))
    with pytest.raises(ValueError, match="fixed-size image input"):
        model_branches(keras.Model(x, keras.layers.GlobalAveragePooling2D()(x)))


FRESH_PROCESS = r"""
import json, sys
import numpy as np
import tensorflow as tf
from PIL import Image
args = json.loads(sys.argv[1])
data = np.load(args["inputs"], allow_pickle=False)
out = {}
for kind, folder in args["dirs"].items():
    loaded = tf.saved_model.load(folder)
    out[kind] = {"serving_default": loaded.signatures["serving_default"](
                     images=tf.constant(data["batch"]))["embedding"].numpy().tolist(),
                 "embed_encoded": loaded.signatures["embed_encoded"](
                     images=tf.constant([data[k].tobytes() for k in sorted(data) if k.startswith("png")]))
                     ["embedding"].numpy().tolist(),
                 "embed_encoded_jpeg": loaded.signatures["embed_encoded"](
                     images=tf.constant([data[k].tobytes() for k in sorted(data) if k.startswith("jpg")]))
                     ["embedding"].numpy().tolist()}
out["tfreid_imported"] = "tfreid" in sys.modules
print(json.dumps(out))
"""


def test_saved_model_fresh_process_parity(stripe_model, cnn_model, exported, tmp_path):
    """As TF Serving loads it: a process importing only TensorFlow, every signature."""
    pngs = {f"png{i}": np.frombuffer(tf.io.encode_png(im).numpy(), np.uint8)
            for i, im in enumerate(images())}
    jpgs = {}
    for i, im in enumerate(images()):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(im)).save(buffer, "JPEG", quality=90)
        jpgs[f"jpg{i}"] = np.frombuffer(buffer.getvalue(), np.uint8)
    batch = np.stack([images()[1]] * 2).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", batch=batch, **pngs, **jpgs)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS,
         json.dumps({"dirs": {k: str(v) for k, v in exported.items()},
                     "inputs": str(tmp_path / "inputs.npz")})],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["tfreid_imported"] is False
    for kind, model in (("stripe", stripe_model), ("cnn", cnn_model)):
        path = exported[kind]
        assert path.name == "1" and path.parent.name == kind
        assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
        expected = np.stack([reference_embedding(model, im) for im in images()])
        # PNG is lossless: the encoded path must match the Keras model exactly too.
        np.testing.assert_allclose(np.array(out[kind]["embed_encoded"]), expected, atol=1e-5)
        np.testing.assert_allclose(np.array(out[kind]["serving_default"]), expected[[1, 1]], atol=1e-5)
        # JPEG: the graph decodes with the accurate IDCT, to the pixels the user's PIL reads.
        pil = [np.asarray(Image.open(io.BytesIO(jpgs[k].tobytes())).convert("RGB")) for k in sorted(jpgs)]
        np.testing.assert_allclose(np.array(out[kind]["embed_encoded_jpeg"]),
                                   np.stack([reference_embedding(model, im) for im in pil]), atol=1e-5)
        meta = json.loads((path / "assets.extra" / export.META_FILE).read_text())
        assert meta["dim"] == expected.shape[1] and meta["signatures"] == list(export.SIGNATURES)


def test_versions(cnn_model, exported):
    base = exported["cnn"].parent.parent
    assert export.version_dir(base, "cnn") == base / "cnn" / "2"  # next free version
    with pytest.raises(FileExistsError, match="overwrite"):
        export.export_saved_model(cnn_model, base, "cnn", version=1)


def test_saved_model_cli_lists_signatures(exported):
    cli = Path(sys.executable).parent / "saved_model_cli"
    if not cli.exists():
        pytest.skip(f"saved_model_cli not installed beside {sys.executable}")
    proc = subprocess.run([str(cli), "show", "--dir", str(exported["cnn"]), "--all"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in export.SIGNATURES:
        assert f"signature_def['{name}']" in proc.stdout
    assert "DT_STRING" in proc.stdout and "outputs['embedding']" in proc.stdout
    assert "shape: (-1, -1, -1, 3)" in proc.stdout and "shape: (-1, 16)" in proc.stdout


def test_keras_round_trip(stripe_model, tmp_path):
    stripe_model.save(tmp_path / "m.keras")
    reloaded = load_keras_model(tmp_path / "m.keras")
    a, b = EmbeddingModel(stripe_model).embed(images()), EmbeddingModel(reloaded).embed(images())
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_version_and_name_errors(tmp_path):
    with pytest.raises(ValueError, match="positive"):
        export.version_dir(tmp_path, "reid", 0)
    with pytest.raises(ValueError, match="plain folder name"):
        export.version_dir(tmp_path, "a/b", 1)
    with pytest.raises(TypeError, match="keras.Model"):
        export.export_saved_model("model.keras", tmp_path, "reid")


def _onnx_available():
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as err:
        return str(err)
    return None


@pytest.mark.skipif(_onnx_available() is not None,
                    reason=f"ONNX extra missing (pip install 'tfreid[onnx]'): {_onnx_available()}")
def test_onnx_parity_cnn(cnn_model, tmp_path):
    em = EmbeddingModel(cnn_model)
    path = export.export_onnx(em, tmp_path / "reid.onnx")
    x = np.random.default_rng(2).integers(0, 256, (3, 64, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(export.onnx_embed(path, {"images": x}),
                               em.embed(x.astype(np.uint8)), atol=1e-5)
    with pytest.raises(ValueError, match="missing ONNX inputs"):
        export.onnx_embed(path, {"other": x})


def test_flip_average_is_the_unit_mean_of_both_views(cnn_model, tmp_path):
    plain, flipped = EmbeddingModel(cnn_model), EmbeddingModel(cnn_model, flip_average=True)
    got = flipped.embed(images(), batch_size=2)
    for i, image in enumerate(images()):
        both = reference_embedding(cnn_model, image) + reference_embedding(cnn_model, image[:, ::-1])
        np.testing.assert_allclose(got[i], both / np.linalg.norm(both), atol=1e-5)
    # The served embedding no longer depends on which way the person faces ...
    np.testing.assert_allclose(flipped.embed([im[:, ::-1] for im in images()]), got, atol=1e-5)
    # ... which the plain embedding of this model does.
    assert np.abs(plain.embed(images()) - got).max() > 1e-2
    path = export.export_saved_model(flipped, tmp_path, "cnn_flip")
    loaded = tf.saved_model.load(str(path))
    batch = np.stack([images()[1]] * 2).astype(np.float32)
    served = loaded.signatures["serving_default"](images=tf.constant(batch))["embedding"].numpy()
    np.testing.assert_allclose(served, got[[1, 1]], atol=1e-5)
    assert json.loads((path / "assets.extra" / export.META_FILE).read_text())["flip_average"] is True
