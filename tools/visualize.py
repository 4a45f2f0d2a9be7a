"""Pictures of trained runs: ranked lists, LSTM gate heat maps and CMC curves.

A run folder of tools/train.py (its dataset comes from the run's flags.json):
  python tools/visualize.py --run=runs/siamese_lstm_cuhk03 --out=pictures
writes pictures/cmc.png, ranked_lists.png and, for siamese LSTM runs, gate_heatmaps.png.
CMC curves of several runs on one plot (run folders or metrics.json files):
  python tools/visualize.py --metrics=runs/a,runs/b --labels="LSTM,MLP" --out=pictures
writes pictures/cmc.png (cmc_compare.png when --run is given too).
"""

from __future__ import annotations

from tfreid import cli  # first: quiet TensorFlow start-up

from pathlib import Path  # noqa: E402

from absl import flags  # noqa: E402

from tfreid.errors import UserError  # noqa: E402
from tfreid.rundir import RunDir  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "Run folder of tools/train.py (metrics.json, model.keras).")
flags.DEFINE_list("metrics", [], "Run folders or metrics.json files whose CMC curves share one plot.")
flags.DEFINE_list("labels", None, "Legend labels for --metrics (default: each run's model).")
flags.DEFINE_string("out", None, "Output folder (default: <run>/pictures).")
flags.DEFINE_string("dataset", None, "Dataset of --run (default: from its flags.json).")
flags.DEFINE_string("data_dir", None, "Dataset folder of --run (default: from its flags.json).")
flags.DEFINE_enum("cmc_protocol", "all_gallery", ["all_gallery", "single_shot", "multi_query"],
                  "Which CMC of the metrics files to draw.")
flags.DEFINE_integer("num_queries", 6, "Queries (rows) in ranked_lists.png.")
flags.DEFINE_integer("top_k", 10, "Gallery images per query in ranked_lists.png.")
flags.DEFINE_integer("num_gate_images", 6, "Query images in gate_heatmaps.png.")
cli.define_dataset_flags()


def main(argv):
    del argv
    from tfreid.experiments import run_pictures

    if not FLAGS.run and not FLAGS.metrics:
        raise UserError("give --run (a run folder) and/or --metrics (runs to compare)")
    if FLAGS.out:
        out = Path(FLAGS.out)
    elif FLAGS.run:
        out = RunDir(FLAGS.run).pictures
    else:
        raise UserError("--out is required with --metrics alone")
    pictures = []
    if FLAGS.run:
        saved = RunDir(FLAGS.run).read_flags() or {}
        dataset = FLAGS.dataset or saved.get("dataset")
        options = cli.dataset_kwargs(dataset, saved if saved.get("dataset") == dataset else None) \
            if dataset else None
        split = run_pictures.run_split(FLAGS.run, FLAGS.dataset, FLAGS.data_dir, options)
        pictures += run_pictures.write_run_pictures(
            FLAGS.run, split, out, num_queries=FLAGS.num_queries, top_k=FLAGS.top_k,
            num_gate_images=FLAGS.num_gate_images, cmc_protocol=FLAGS.cmc_protocol)
    if FLAGS.metrics:
        name = "cmc_compare.png" if FLAGS.run else "cmc.png"
        pictures.append(run_pictures.plot_cmc_of_runs(FLAGS.metrics, out / name, labels=FLAGS.labels,
                                             protocol=FLAGS.cmc_protocol))
    print("pictures:\n" + "\n".join(f"  {p}" for p in pictures))


if __name__ == "__main__":
    cli.run(main)
