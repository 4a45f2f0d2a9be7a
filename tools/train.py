"""Trains a re-ID model and evaluates its best checkpoint on the test split.

Stripe models (Varior et al. 2016):
  python tools/train.py --flagfile=zoo/configs/siamese_lstm_cuhk03.cfg --data_dir=DATA --out=runs/x
CNN embeddings (Chen, Duffner et al. 2021):
  python tools/train.py --flagfile=zoo/configs/rank_triplet_mobilenetv2_cuhk03.cfg --data_dir=DATA --out=runs/y

A killed run continues with the same command plus --resume. Every hyper-parameter is a flag;
the run folder receives flags.json, checkpoints, TensorBoard logs, metrics.json and the model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
_ABSL_FLAGS = set(FLAGS)  # defined by absl itself (logging, --flagfile, ...)

# Data and run
flags.DEFINE_string("dataset", "synthetic", "Dataset name (see tfreid.data.names()).")
flags.DEFINE_string("data_dir", None, "Dataset folder or data root; default $TFREID_DATA "
                    "(for 'synthetic': where to generate it).")
flags.DEFINE_string("out", None, "Run folder (created).", required=True)
flags.DEFINE_integer("seed", 0, "Seed of initialisation, sampling and the validation hold-out.")
flags.DEFINE_bool("resume", False, "Continue the run in --out from its last checkpoint.")
flags.DEFINE_integer("val_ids", 100, "Training identities held out for early stopping.")
flags.DEFINE_enum("model", "siamese_lstm", ["siamese_lstm", "mlp", "cnn"],
                  "siamese_lstm / mlp: stripe-feature models; cnn: a CNN embedding.")
flags.DEFINE_integer("epochs", None, "Epochs at most (default: 20 stripe, 200 cnn).")
flags.DEFINE_integer("patience", None, "Early-stopping patience in epochs, 0 = off "
                     "(default: 5 stripe, 0 cnn).")
flags.DEFINE_float("learning_rate", None, "Initial learning rate (default: 1e-3 stripe, 1e-4 cnn).")
flags.DEFINE_float("margin", None, "Loss margin (default: 0.5 stripe contrastive, loss default for cnn).")

# Stripe models
flags.DEFINE_list("features", ["lomo", "cn"], "Feature channels, one network each, score-fused.")
flags.DEFINE_integer("hidden_units", 50, "LSTM units n (paper: 50 CUHK03/VIPeR, 25 Market-1501).")
flags.DEFINE_enum("lstm_mode", "per_scale", ["per_scale", "one_sequence"],
                  "How the three LOMO scales are fed: one LSTM per scale, or one 40-row sequence.")
flags.DEFINE_integer("mlp_layers", 1, "Layers of the Eq. 8-9 baseline (--model=mlp).")
flags.DEFINE_integer("mlp_units", None, "Width of every baseline layer (default: rows x "
                     "--hidden_units, the LSTM embedding's size).")
flags.DEFINE_string("mlp_activation", "tanh", "Non-linearity f of the baseline.")
flags.DEFINE_enum("objective", "contrastive",
                  ["contrastive", "rank_triplet", "rank_triplet_baseline", "batch_hard"],
                  "Stripe models: siamese pairs + contrastive loss, or P x K batches + a list loss.")
flags.DEFINE_float("lr_decay", 0.95, "Per-epoch learning-rate factor (stripe models).")
flags.DEFINE_integer("batch_size", 100, "Pairs per batch (contrastive stripe models).")
flags.DEFINE_integer("negatives_per_positive", 2, "Hard negatives per positive of each image.")
flags.DEFINE_string("lomo_normalize", "row", "LOMO normalisation: 'row' or 'global'.")
flags.DEFINE_integer("cn_words", 350, "Color Names codebook size.")
flags.DEFINE_integer("cn_stripes", 16, "Color Names stripes.")
flags.DEFINE_string("colornames", None, "w2c table (.npy/.mat); default $TFREID_DATA/colornames/.")

# CNN models
flags.DEFINE_string("backbone", "mobilenetv2", "keras.applications backbone name.")
flags.DEFINE_string("weights", "offline", "Backbone weights: none, imagenet, offline, or a path.")
flags.DEFINE_string("weights_dir", None, "Offline weights folder (default $TFREID_WEIGHTS).")
flags.DEFINE_integer("height", 256, "CNN input height.")
flags.DEFINE_integer("width", 128, "CNN input width.")
flags.DEFINE_integer("embedding_dim", 256, "CNN embedding size.")
flags.DEFINE_enum("loss", "rank_triplet", ["classification", "contrastive", "triplet", "quadruplet",
                                           "batch_hard", "rank_triplet_baseline", "rank_triplet"],
                  "CNN loss.")
flags.DEFINE_integer("p", 32, "Identities per P x K batch.")
flags.DEFINE_integer("k", 4, "Images per identity in a P x K batch.")
flags.DEFINE_float("weight_decay", 5e-4, "L2 weight decay (CNN).")
flags.DEFINE_integer("lr_step_epochs", 80, "CNN learning rate x0.1 every this many epochs.")
flags.DEFINE_integer("steps_per_epoch", None, "CNN batches per epoch (default: identities // p).")
flags.DEFINE_string("train_from", None,
                    "CNN partial fine-tuning (CPU budget): name of the backbone layer that begins "
                    "the trained top, e.g. block_16_expand (MobileNetV2's last block, Conv_1, "
                    "pooling, embedding). The frozen layers below run once per training image "
                    "and its flip, cached in <out>/cache/; no random-crop augmentation. An "
                    "invalid name lists the valid ones. Default (or an empty value, to override a flagfile): "
                    "train the whole network.")


def _stripe(split, out: Path) -> dict:
    from tfreid.training.stripe_experiment import ChannelSpec, run_stripe_experiment
    from tfreid.training.stripes import StripeTrainConfig

    config = StripeTrainConfig(
        architecture="lstm" if FLAGS.model == "siamese_lstm" else "mlp",
        hidden_units=FLAGS.hidden_units, lstm_mode=FLAGS.lstm_mode, mlp_layers=FLAGS.mlp_layers,
        mlp_units=FLAGS.mlp_units, mlp_activation=FLAGS.mlp_activation, objective=FLAGS.objective,
        margin=0.5 if FLAGS.margin is None else FLAGS.margin,
        learning_rate=1e-3 if FLAGS.learning_rate is None else FLAGS.learning_rate,
        lr_decay=FLAGS.lr_decay, batch_size=FLAGS.batch_size, pk_p=FLAGS.p, pk_k=FLAGS.k,
        epochs=20 if FLAGS.epochs is None else FLAGS.epochs,
        patience=5 if FLAGS.patience is None else FLAGS.patience,
        negatives_per_positive=FLAGS.negatives_per_positive, seed=FLAGS.seed)
    spec = ChannelSpec(lomo_normalize=FLAGS.lomo_normalize, cn_words=FLAGS.cn_words,
                       cn_stripes=FLAGS.cn_stripes, colornames=FLAGS.colornames)
    return run_stripe_experiment(split, config, out, channels=FLAGS.features, spec=spec,
                                 num_val_ids=FLAGS.val_ids, resume=FLAGS.resume)


def _cnn(split, out: Path) -> dict:
    from tfreid.training.cnn_experiment import run_cnn_experiment
    from tfreid.training.cnn import CNNTrainConfig

    config = CNNTrainConfig(
        backbone=FLAGS.backbone, weights=None if FLAGS.weights == "none" else FLAGS.weights,
        height=FLAGS.height, width=FLAGS.width, embedding_dim=FLAGS.embedding_dim, loss=FLAGS.loss,
        margin=FLAGS.margin, p=FLAGS.p, k=FLAGS.k,
        learning_rate=1e-4 if FLAGS.learning_rate is None else FLAGS.learning_rate,
        weight_decay=FLAGS.weight_decay, lr_step_epochs=FLAGS.lr_step_epochs,
        epochs=200 if FLAGS.epochs is None else FLAGS.epochs,
        steps_per_epoch=FLAGS.steps_per_epoch,
        patience=0 if FLAGS.patience is None else FLAGS.patience, seed=FLAGS.seed,
        train_from=FLAGS.train_from or None)
    return run_cnn_experiment(split, config, out, num_val_ids=FLAGS.val_ids, resume=FLAGS.resume,
                              weights_dir=FLAGS.weights_dir)


# Flags a resumed run may change: a longer schedule, and where data live on this machine.
RESUMABLE_CHANGES = {"resume", "epochs", "patience", "data_dir", "weights_dir", "colornames", "out",
                     "flagfile"}


def _changed_settings(started: dict, now: dict) -> list[str]:
    """'name: old -> new' for every training flag that differs from the recorded run."""
    own = set(FLAGS) - _ABSL_FLAGS
    return [f"--{k}: {started[k]!r} -> {now[k]!r}" for k in sorted(own - RESUMABLE_CHANGES)
            if k in started and k in now and started[k] != now[k]]


def main(argv):
    del argv
    from tfreid.data import datasets

    out = Path(FLAGS.out)
    flags_path = out / "flags.json"
    if flags_path.exists() and not FLAGS.resume:
        sys.exit(f"--out={out} already holds a run (flags.json); pass --resume to continue it, "
                 "or choose another --out.")
    if flags_path.exists():
        changed = _changed_settings(json.loads(flags_path.read_text()), FLAGS.flag_values_dict())
        if changed:
            sys.exit(f"--resume of {out} with other settings than the run was started with "
                     f"({'; '.join(changed)}): checkpoints would not match. Use the original "
                     "flags (only --epochs, --patience and paths may change), or another --out.")
    out.mkdir(parents=True, exist_ok=True)
    flags_path.write_text(json.dumps(FLAGS.flag_values_dict(), indent=1, default=str))
    split = datasets.build(FLAGS.dataset, FLAGS.data_dir)
    print(split.summary())
    start = time.perf_counter()
    metrics = _cnn(split, out) if FLAGS.model == "cnn" else _stripe(split, out)
    print(f"finished in {time.perf_counter() - start:.0f} s; metrics in {out / 'metrics.json'}")
    return 0 if metrics else 1


if __name__ == "__main__":
    app.run(main)
