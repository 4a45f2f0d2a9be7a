"""The branches a stripe deploy model declares (tfreid.models.stripe_deploy), read back by
serving from a saved and reloaded model, and the models that do not declare them refused."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfreid.features import LomoLayer  # noqa: E402
from tfreid.models import build_stripe_mlp  # noqa: E402
from tfreid.models.stripe_deploy import build_deploy_model, embedding_name, stripe_branches  # noqa: E402
from tfreid.serving import load_keras_model, model_branches  # noqa: E402


def lomo_channel(network_name=embedding_name("lomo")):
    """A small LOMO feature layer (32x24 images) and a 5-d MLP embedding network."""
    layer = LomoLayer(output="rows", normalize="row", name="lomo", height=32, width=24,
                      block_size=8, block_step=4, num_scales=2, siltp_radii=(1, 2), hsv_bins=(4, 4, 4))
    return layer, build_stripe_mlp(layer.config.num_rows, layer.config.row_dim, units=5, seed=0,
                                   name=network_name)


def test_a_saved_deploy_model_declares_its_branches(tmp_path):
    layer, network = lomo_channel()
    build_deploy_model({"lomo": layer}, {"lomo": network}).save(tmp_path / "model.keras")
    loaded = load_keras_model(tmp_path / "model.keras")
    (feature, net), = stripe_branches(loaded).values()
    assert (feature.name, net.name) == ("lomo", "lomo_embedding")
    branch, = model_branches(loaded)
    assert (branch.name, branch.size, branch.dim) == ("lomo", (32, 24), 5)
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 20, 3)).astype(np.float32)
    np.testing.assert_allclose(branch.fn(images), loaded(images)["lomo"], atol=1e-6)


def test_misnamed_channels_are_refused():
    layer, network = lomo_channel(network_name="stripe_mlp1")
    with pytest.raises(ValueError, match="must be named 'lomo'.*'lomo_embedding'"):
        build_deploy_model({"lomo": layer}, {"lomo": network})
    with pytest.raises(ValueError, match="same channels"):
        build_deploy_model({"lomo": layer}, {"cn": network})
    images = keras.Input((None, None, 3))
    undeclared = keras.Model(images, {"lomo": network(layer(images))})
    with pytest.raises(ValueError, match=r"has no channel \['lomo'\]"):
        model_branches(undeclared)
    layer, network = lomo_channel()
    with pytest.raises(ValueError, match=r"has no channel \['cn'\]"):
        stripe_branches(build_deploy_model({"lomo": layer}, {"lomo": network}), ["cn"])
    with pytest.raises(ValueError, match="not a stripe deploy model"):
        stripe_branches(network)
