r"""Trains a re-ID model and evaluates its best checkpoint on the test split.

Stripe models (Varior et al. 2016):
  python tools/train.py --flagfile=zoo/configs/siamese_lstm_cuhk03.cfg --data_dir=DATA --out=runs/x
CNN embeddings (Chen, Duffner et al. 2021):
  python tools/train.py --flagfile=zoo/configs/rank_triplet_mobilenetv2_cuhk03.cfg --data_dir=DATA --out=runs/y

Your own folder (file names parsed by a regex with groups pid and camid):
  python tools/train.py --dataset=folder --data_dir=my_data --folder_pattern='(?P<pid>\d+)_c(?P<camid>\d+)_.*\.jpg' --out=runs/z

A killed run continues with the same command plus --resume. Every hyper-parameter is a flag;
the run folder receives flags.json, checkpoints, TensorBoard logs, metrics.json and the model.
Every flag, the dataset and the Color Names table are checked before flags.json is written; a
run that fails before its first checkpoint leaves --out as it found it.
"""

from __future__ import annotations

from tfreid import cli  # first: quiet TensorFlow start-up

import time  # noqa: E402
from pathlib import Path  # noqa: E402

from absl import flags  # noqa: E402

from tfreid import train_flags  # noqa: E402
from tfreid.errors import UserError  # noqa: E402
from tfreid.rundir import RunDir  # noqa: E402

FLAGS = flags.FLAGS
_ABSL_FLAGS = set(FLAGS)  # defined by absl itself (logging, --flagfile, ...) and by tfreid.cli

train_flags.define()
cli.define_dataset_flags()


# Flags whose default depends on the model: unset (None), the config dataclass's own applies.
MODEL_DEFAULTS = ("margin", "learning_rate", "epochs", "patience", "p", "k")


def _given_or_default() -> dict:
    """The MODEL_DEFAULTS flags that were given, as config keywords (unset ones are left out)."""
    return {name: FLAGS[name].value for name in MODEL_DEFAULTS if FLAGS[name].value is not None}


def _applied(settings) -> dict:
    """The MODEL_DEFAULTS values the run's config applies (what flags.json records, so that a
    card and a --resume see the values trained with, not None)."""
    config = settings[0] if isinstance(settings, tuple) else settings
    return {name: getattr(config, name) for name in MODEL_DEFAULTS}


def _stripe_settings():
    """(StripeTrainConfig, ChannelSpec) of the flags; raises on a bad value, before any work."""
    from tfreid import paths
    from tfreid.features import load_w2c
    from tfreid.experiments.stripes import CHANNELS, ChannelSpec
    from tfreid.training.stripes import StripeTrainConfig

    unknown = [c for c in FLAGS.features if c not in CHANNELS]
    if unknown or not FLAGS.features or len(set(FLAGS.features)) != len(FLAGS.features):
        raise UserError(f"--features={','.join(FLAGS.features)}: expected one or more of "
                        f"{', '.join(CHANNELS)}, each once (--model={FLAGS.model} trains one "
                        "network per feature channel).")

    config = StripeTrainConfig(
        architecture="lstm" if FLAGS.model == "siamese_lstm" else "mlp",
        hidden_units=FLAGS.hidden_units, lstm_mode=FLAGS.lstm_mode, mlp_layers=FLAGS.mlp_layers,
        mlp_units=FLAGS.mlp_units, mlp_activation=FLAGS.mlp_activation, objective=FLAGS.objective,
        lr_decay=FLAGS.lr_decay, batch_size=FLAGS.batch_size,
        negatives_per_positive=FLAGS.negatives_per_positive, seed=FLAGS.seed, **_given_or_default())
    table = None
    if "cn" in FLAGS.features:
        table = str(paths.colornames_table(FLAGS.colornames, FLAGS.data_dir))
        load_w2c(table)  # a bad table is refused now, not after the LOMO channel has trained
    spec = ChannelSpec(lomo_normalize=FLAGS.lomo_normalize, cn_words=FLAGS.cn_words,
                       cn_stripes=FLAGS.cn_stripes, colornames=table)
    return config, spec, _transfer_source()


def _cnn_config():
    """CNNTrainConfig of the flags; raises on a bad value, before any work."""
    from tfreid.models.backbones import backbone_spec
    from tfreid.training.cnn import CNNTrainConfig

    backbone_spec(FLAGS.backbone)
    if FLAGS.weights not in ("none", "imagenet", "offline") and not Path(FLAGS.weights).is_file():
        raise UserError(f"--weights={FLAGS.weights}: no such file (expected none, imagenet, "
                        "offline, or a .pt / .weights.h5 file).")
    return CNNTrainConfig(
        backbone=FLAGS.backbone, weights=None if FLAGS.weights == "none" else FLAGS.weights,
        height=FLAGS.height, width=FLAGS.width, embedding_dim=FLAGS.embedding_dim, loss=FLAGS.loss,
        weight_decay=FLAGS.weight_decay,
        lr_step_epochs=FLAGS.lr_step_epochs, steps_per_epoch=FLAGS.steps_per_epoch, seed=FLAGS.seed,
        **_given_or_default(),
        train_from=FLAGS.train_from or None, strategy=FLAGS.strategy,
        mixed_precision=FLAGS.mixed_precision or None)


def _train(split, out: Path, settings) -> dict:
    if FLAGS.model == "cnn":
        from tfreid.experiments.cnn import run_cnn_experiment

        return run_cnn_experiment(split, settings, out, num_val_ids=FLAGS.val_ids,
                                  resume=FLAGS.resume, weights_dir=FLAGS.weights_dir)
    from tfreid.experiments.stripes import run_stripe_experiment

    config, spec, source = settings
    return run_stripe_experiment(split, config, out, channels=FLAGS.features, spec=spec,
                                 num_val_ids=FLAGS.val_ids, resume=FLAGS.resume,
                                 init_from=source, init_name=FLAGS.init_from)


def _transfer_source():
    """The trained stripe model of --init_from (None without it); refused early if unusable."""
    if not FLAGS.init_from:
        return None
    from tfreid import zoo
    from tfreid.models.stripe_deploy import stripe_branches

    if FLAGS.model == "cnn":
        raise UserError("--init_from is for stripe models (--model=siamese_lstm or mlp)")
    source = Path(FLAGS.init_from)
    model = (zoo.from_run(source) if source.is_dir() else zoo.load(FLAGS.init_from)).keras_model
    try:
        stripe_branches(model, FLAGS.features)
    except ValueError as err:
        raise UserError(f"--init_from={FLAGS.init_from} cannot start --features="
                        f"{','.join(FLAGS.features)}: {err}") from err
    return model


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
    out = Path(FLAGS.out)
    run = RunDir(out)
    run.check_start(FLAGS.resume)
    if run.flags.exists():
        started = run.read_flags()
        for name in MODEL_DEFAULTS:  # unset on --resume: the value the run was started with
            if FLAGS[name].value is None and started.get(name) is not None:
                FLAGS[name].value = started[name]
        changed = _changed_settings(started, FLAGS.flag_values_dict())
        if changed:
            raise UserError(
                f"--resume of {out} with other settings than the run was started with "
                f"({'; '.join(changed)}): checkpoints would not match. Use the original flags "
                "(only --epochs, --patience and paths may change), or another --out.")
    # Everything that can be checked is checked before the run folder is written.
    cli.dataset_kwargs(FLAGS.dataset)  # the dataset's name and options first: they cost nothing
    settings = _cnn_config() if FLAGS.model == "cnn" else _stripe_settings()
    split = cli.build_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(split.summary())
    started_here, created = not run.flags.exists(), not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    run.write_json(run.flags, {**FLAGS.flag_values_dict(), **_applied(settings)})
    if split.skipped:   # recorded with the run: its metrics are on the images that remained
        run.write_json(run.skipped_images, dict(split.skipped))
    start = time.perf_counter()
    try:
        metrics = _train(split, out, settings)
    except BaseException:
        if started_here and not run.has_checkpoint():  # nothing to resume: leave --out reusable
            run.flags.unlink(missing_ok=True)
            run.skipped_images.unlink(missing_ok=True)
            if created and not any(out.iterdir()):
                out.rmdir()
        raise
    print(f"finished in {time.perf_counter() - start:.0f} s; metrics in {run.metrics}")
    return 0 if metrics else 1


if __name__ == "__main__":
    cli.run(main)
