"""Evaluates a trained run folder or a zoo model on a dataset's test split.

  python tools/evaluate.py --zoo=siamese_lstm_cuhk03 --dataset=cuhk03_pair1 --data_dir=DATA --check_card
  python tools/evaluate.py --run=runs/x --dataset=market1501 --data_dir=DATA --rerank --out_json=m.json
  python tools/evaluate.py --run=runs/z   # a run's own dataset, options and --data_dir (flags.json)

Prints CMC / mAP of the serving embedding (what tfreid.zoo's `rank` and TF Serving give) under
the all-gallery, single-shot (--single_shot_draws) and multi-query protocols, with
k-reciprocal re-ranking (--rerank), plus per-channel and score-fused results for stripe
models of several feature channels. --check_card compares with the zoo card's metrics.
"""

from __future__ import annotations

from tfreid import cli  # first: quiet TensorFlow start-up

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from absl import flags  # noqa: E402

from tfreid.errors import UserError  # noqa: E402
from tfreid.rundir import RunDir  # noqa: E402

FLAGS = flags.FLAGS
cli.define_dataset_flags()
flags.DEFINE_string("run", None, "A tools/train.py run folder (its model.keras).")
flags.DEFINE_string("zoo", None, "A zoo model name (tfreid.zoo.list()).")
flags.DEFINE_string("dataset", None, "Dataset name (default: the card's / run's dataset).")
flags.DEFINE_string("data_dir", None, "Dataset folder or data root (default: the --run's own "
                    "if it recorded one, else $TFREID_DATA).")
flags.DEFINE_bool("rerank", False, "Also evaluate with k-reciprocal re-ranking.")
flags.DEFINE_bool("multi_query", True, "Also report multi-query results.")
flags.DEFINE_enum("ap", "market", ["market", "mean_precision"], "AP convention.")
flags.DEFINE_integer("single_shot_draws", 10, "Single-gallery-shot draws (seeds 0..n-1).")
flags.DEFINE_integer("batch_size", 64, "Images per model call.")
flags.DEFINE_bool("flip_average", None, "Test-time flip averaging (tfreid.serving): the unit mean "
                  "of the embeddings of each image and its horizontal flip. Default: the zoo "
                  "card's setting with --zoo, off with --run.")
flags.DEFINE_string("out_json", None, "Write the full results here (JSON).")
flags.DEFINE_bool("check_card", False, "With --zoo: exit 1 unless the card's metrics are "
                  "reproduced within --tolerance_queries queries of each protocol.")
flags.DEFINE_float("tolerance_queries", 1.0, "Tolerance of --check_card, in queries: a metric over "
                   "n queries may differ from the card by this many / n (float results differ "
                   "by CPU).", lower_bound=0.0)


def main(argv):
    del argv
    from tfreid import zoo
    from tfreid.serving import EmbeddingModel
    from tfreid.model_eval import (compare_summaries, evaluate_model, format_result,
                                   query_counts, summarize)

    if bool(FLAGS.run) == bool(FLAGS.zoo):
        raise UserError("give exactly one of --run=RUN_FOLDER or --zoo=NAME")
    if FLAGS.check_card and not FLAGS.zoo:
        raise UserError("--check_card needs --zoo")
    if FLAGS.check_card and FLAGS.flip_average is not None:
        raise UserError("--check_card measures the card's own serving settings; leave out "
                        "--flip_average")
    model = zoo.load(FLAGS.zoo) if FLAGS.zoo else zoo.from_run(FLAGS.run)
    if FLAGS.flip_average is not None and FLAGS.flip_average != model.pipeline.flip_average:
        model = EmbeddingModel(model.keras_model, model.card, antialias=model.pipeline.antialias,
                               flip_average=FLAGS.flip_average)
    dataset = FLAGS.dataset or model.card.get("training", {}).get("dataset")
    recorded = {}
    if FLAGS.run and RunDir(FLAGS.run).flags.is_file():
        recorded = RunDir(FLAGS.run).read_flags()
        dataset = dataset or recorded.get("dataset")
    if not dataset:
        raise UserError("no --dataset given and none recorded with the model")
    if recorded.get("dataset") != dataset:
        recorded = {}  # the run's dataset options and folder are those of another dataset
    split = cli.build_dataset(dataset, FLAGS.data_dir or recorded.get("data_dir"), recorded)
    result = evaluate_model(model, split, ap=FLAGS.ap, single_shot_draws=FLAGS.single_shot_draws,
                            rerank=FLAGS.rerank, multi_query=FLAGS.multi_query,
                            batch_size=FLAGS.batch_size, progress=True)
    result["summary"] = summarize(result)
    if FLAGS.out_json:
        Path(FLAGS.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(FLAGS.out_json).write_text(json.dumps(result, indent=1))
    format_result(result)
    if FLAGS.check_card:
        card = model.card["metrics"].get("zoo")
        if not card:
            raise UserError(f"card of {FLAGS.zoo!r} has no zoo metrics to check")
        if card["settings"] != result["settings"] or card["dataset"] != dataset:
            raise UserError(f"the card's metrics were measured with {card['dataset']} "
                            f"{card['settings']}, not {dataset} {result['settings']}: {card['command']}")
        problems = compare_summaries(result["summary"], card["results"], query_counts(result),
                                     FLAGS.tolerance_queries)
        if problems:
            print("card metrics NOT reproduced:\n  " + "\n  ".join(problems))
            return 1
        print(f"card metrics reproduced within {FLAGS.tolerance_queries:g} queries per protocol")
    return 0


if __name__ == "__main__":
    cli.run(main)
