"""The stripe trainer on synthetic data: the siamese LSTM learns (loss down, rank-1 up)."""

import pytest

from tfreid.data import synthetic
from tfreid.data.records import arrays, train_val_test_parts
from tfreid.features import LomoLayer
from tfreid.experiments.stripes import featurize
from tfreid.training.stripes import StripeTrainConfig, ViewSplit, build_stripe_model, rank_split, train_stripe_model


@pytest.fixture(scope="module")
def lomo_parts(synthetic_data):
    split = synthetic.load(synthetic_data(num_train_ids=40, num_test_ids=30, num_cameras=2,
                                          images_per_camera=3))
    parts = train_val_test_parts(split, num_val_ids=10, seed=0)
    layer = LomoLayer(output="rows", normalize="row")
    out = {}
    for name, records in parts.items():
        paths, pids, camids = arrays(records)
        out[name] = (featurize(layer, paths, log=lambda s: None), pids, camids)
    return out


def _view(parts, query, gallery):
    (q, qp, qc), (g, gp, gc) = parts[query], parts[gallery]
    return ViewSplit(q, g, qp, gp, qc, gc)


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["contrastive", "rank_triplet"])
def test_training_lowers_the_loss_and_beats_the_untrained_network(lomo_parts, tmp_path, objective):
    config = StripeTrainConfig(hidden_units=16, epochs=6, patience=0, learning_rate=1e-3,
                               objective=objective, p=8, k=4, seed=0)
    test = _view(lomo_parts, "query", "gallery")
    untrained = build_stripe_model(config, 40, 674, scales=(24, 11, 5))
    before = rank_split(untrained, test).cmc[0]
    x, pids, camids = lomo_parts["train"]
    model, history = train_stripe_model(config, x, pids, camids, _view(lomo_parts, "val_query", "val_gallery"),
                                        tmp_path, scales=(24, 11, 5), log=lambda s: None)
    after = rank_split(model, test).cmc[0]
    assert history[-1]["loss"] < history[0]["loss"]
    assert after >= before + 0.08, (before, after)  # untrained: a random projection of LOMO


def test_mismatched_validation_features_are_a_clear_error(lomo_parts, tmp_path):
    x, pids, camids = lomo_parts["train"]
    bad = _view(lomo_parts, "val_query", "val_gallery")
    bad = ViewSplit(bad.query[:, :10], bad.gallery[:, :10], bad.q_pids, bad.g_pids, bad.q_camids, bad.g_camids)
    with pytest.raises(ValueError, match="do not match"):
        train_stripe_model(StripeTrainConfig(epochs=1), x, pids, camids, bad, tmp_path, log=lambda s: None)


def test_mlp_units_sets_the_baseline_width():
    rows, dim = 6, 10
    default = build_stripe_model(StripeTrainConfig(architecture="mlp", hidden_units=4), rows, dim)
    narrow = build_stripe_model(StripeTrainConfig(architecture="mlp", mlp_layers=2, mlp_units=7), rows, dim)
    assert default.output_shape == (None, rows * 4)  # R * n, the LSTM embedding's width
    assert narrow.output_shape == (None, 7)
    assert narrow.get_layer("fc1").kernel.shape == (rows * dim, 7)
    with pytest.raises(ValueError, match="mlp_units must be >= 1"):
        StripeTrainConfig(architecture="mlp", mlp_units=0)


def test_feature_cache_is_reused_only_for_the_same_images(tmp_path, synthetic_data):
    from tfreid.experiments.stripes import ChannelSpec, _channel_features

    split = synthetic.load(synthetic_data(num_train_ids=8, num_test_ids=4, num_cameras=2,
                                          images_per_camera=2))
    messages = []
    first = _channel_features("lomo", ChannelSpec(), train_val_test_parts(split, 2, 0), tmp_path / "run",
                              0, messages.append)[1]
    cache = tmp_path / "run" / "features" / "lomo.npz"
    stamp = cache.stat().st_mtime_ns
    again = _channel_features("lomo", ChannelSpec(), train_val_test_parts(split, 2, 0), tmp_path / "run",
                              0, messages.append)[1]
    assert cache.stat().st_mtime_ns == stamp and (again["train"] == first["train"]).all()
    other_holdout = train_val_test_parts(split, 4, 0)
    changed = _channel_features("lomo", ChannelSpec(), other_holdout, tmp_path / "run", 0, messages.append)[1]
    assert any("other images or settings" in m for m in messages)
    assert len(changed["train"]) == len(other_holdout["train"]) != len(first["train"])


@pytest.mark.slow
def test_transfer_starts_from_the_source_weights_and_reuses_its_feature_layer(tmp_path, synthetic_data):
    import numpy as np

    from tfreid.experiments.stripes import run_stripe_experiment

    split = synthetic.load(synthetic_data(num_train_ids=12, num_test_ids=6, num_cameras=2,
                                          images_per_camera=2))
    config = StripeTrainConfig(hidden_units=4, epochs=1, patience=0, batch_size=16, seed=0)
    quiet = dict(channels=["lomo"], num_val_ids=3, log=lambda s: None)
    run_stripe_experiment(split, config, tmp_path / "source", **quiet)
    from tfreid.serving import load_keras_model
    source = load_keras_model(tmp_path / "source" / "model.keras")
    start = source.get_layer("lomo_embedding").get_weights()

    # a vanishing learning rate: the result must equal the source weights
    frozen = StripeTrainConfig(hidden_units=4, epochs=1, patience=0, batch_size=16, seed=1,
                               learning_rate=1e-12)
    run_stripe_experiment(split, frozen, tmp_path / "transfer", init_from=source, init_name="src",
                          **quiet)
    result = load_keras_model(tmp_path / "transfer" / "model.keras")
    for got, want in zip(result.get_layer("lomo_embedding").get_weights(), start):
        np.testing.assert_allclose(got, want, atol=1e-6)
    wrong = StripeTrainConfig(hidden_units=5, epochs=1, patience=0, batch_size=16, seed=0)
    with pytest.raises(ValueError, match="do not fit"):
        run_stripe_experiment(split, wrong, tmp_path / "bad", init_from=source, init_name="src",
                              **quiet)
