"""Publishes a finished training run as a zoo entry: model file + card (sha256, metrics).

Into the local cache ($TFREID_HOME/zoo, default ~/.cache/tfreid/zoo), for models users build:
  python tools/publish.py --run=runs/siamese_lstm_viper --name=siamese_lstm_viper --data_dir=DATA
Into the repository's committed zoo:
  python tools/publish.py --run=runs/siamese_lstm_cuhk03 --name=siamese_lstm_cuhk03 --dest=zoo --data_dir=DATA

The card's zoo metrics are measured on the published file by the same code as
`tools/evaluate.py --zoo=<name>` (the command is stored in the card). After a change that moves
every model's inputs (e.g. the image decoder), a committed card is re-measured in place with
  python tools/publish.py --remeasure=siamese_lstm_cuhk03 --dest=zoo --data_dir=DATA
"""

from __future__ import annotations

from tfreid import cli  # first: quiet TensorFlow start-up

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "Finished tools/train.py run folder.")
flags.DEFINE_string("name", None, "Zoo name (cards/<name>.json).")
flags.DEFINE_string("remeasure", None, "Instead of publishing a run: re-measure the zoo metrics of "
                    "this card under --dest with its own dataset and settings, keeping its model.")
flags.DEFINE_string("dest", None, "Zoo root to write into (default $TFREID_HOME/zoo).")
flags.DEFINE_string("dataset", None, "Test dataset of the card's metrics (default: the run's).")
flags.DEFINE_string("data_dir", None, "Dataset folder (default $TFREID_DATA).")
flags.DEFINE_bool("evaluate", True, "Measure the card's zoo metrics on the published model.")
flags.DEFINE_bool("rerank", False, "Also measure with k-reciprocal re-ranking.")
flags.DEFINE_enum("ap", "market", ["market", "mean_precision"], "AP convention.")
flags.DEFINE_integer("single_shot_draws", 10, "Single-shot CMC draws (seeds 0..n-1).")
flags.DEFINE_bool("flip_average", None, "Serve the model with test-time flip averaging (the unit "
                  "mean of the embeddings of each image and its horizontal flip); stored in the "
                  "card. Default: off when publishing, the card's own setting with --remeasure.")


def main(argv):
    del argv
    from tfreid.publish import measure_card, publish

    if FLAGS.remeasure:
        from pathlib import Path
        if not FLAGS.dest:
            raise ValueError("--remeasure needs --dest, the zoo root that holds the card")
        measure_card(Path(FLAGS.dest) / "cards" / f"{FLAGS.remeasure}.json", FLAGS.dest,
                     FLAGS.dataset, FLAGS.data_dir, flip_average=FLAGS.flip_average)
        return
    if not FLAGS.run or not FLAGS.name:
        raise ValueError("give --run and --name (or --remeasure=NAME --dest=ZOO)")
    publish(FLAGS.run, FLAGS.name, FLAGS.dest, data_dir=FLAGS.data_dir, dataset=FLAGS.dataset,
            evaluate=FLAGS.evaluate, rerank=FLAGS.rerank, ap=FLAGS.ap,
            single_shot_draws=FLAGS.single_shot_draws, flip_average=bool(FLAGS.flip_average))


if __name__ == "__main__":
    cli.run(main)
