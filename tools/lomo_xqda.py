"""LOMO + Euclidean and LOMO + XQDA (Liao et al., CVPR 2015) on a dataset's query/gallery.

XQDA is fitted on the train split (two camera views: the smallest camera id vs the others);
the query x gallery distances are evaluated with all-gallery CMC/mAP ("market" AP convention)
and the single-shot CMC (one gallery image per identity, mean over draws with seeds 0-9).

Example:
  python tools/extract_features.py --dataset=cuhk03_pair1 --features=lomo --out=out/lomo.npz
  python tools/lomo_xqda.py --features_file=out/lomo.npz --out=out/lomo_xqda.json
(without --features_file the LOMO features are extracted first, from --dataset/--data_dir).
"""

from tfreid import cli  # first: quiet TensorFlow start-up

import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from tfreid import evaluation  # noqa: E402
from tfreid.evaluation import protocols  # noqa: E402
from tfreid.features import extract  # noqa: E402
from tfreid.models.xqda import XQDA  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("features_file", None, "A .npz from tools/extract_features.py with LOMO.")
flags.DEFINE_string("dataset", "cuhk03_pair1", "Dataset to extract from when no features_file.")
flags.DEFINE_string("data_dir", None, "Dataset root (default: $TFREID_DATA).")
flags.DEFINE_string("out", None, "Write the results as JSON here.")
flags.DEFINE_float("regularizer", 0.001, "XQDA lambda.")
flags.DEFINE_integer("dims", None, "XQDA subspace dims (default: eigenvalues > 1).")
flags.DEFINE_integer("num_draws", 10, "Single-shot draws (seeds 0..num_draws-1).")
flags.DEFINE_integer("seed", 0, "Unused by XQDA (closed form); recorded for completeness.")
cli.define_dataset_flags()


def _load():
    if FLAGS.features_file:
        data = extract.load_features(FLAGS.features_file)
        if "train_lomo" not in data:
            raise ValueError(f"{FLAGS.features_file!r} has no LOMO features (keys: {sorted(data)}).")
        return data
    splits, _ = extract.extract_dataset(cli.build_dataset(FLAGS.dataset, FLAGS.data_dir), ["lomo"])
    return {f"{part}_{key}": np.asarray(value) for part, contents in splits.items()
            for key, value in contents.items()}


def _report(name, distmat, data):
    ids = (data["query_pids"], data["gallery_pids"], data["query_camids"], data["gallery_camids"])
    full = evaluation.evaluate(distmat, *ids, ap="market")
    single = protocols.single_shot_cmc(distmat, *ids, seeds=range(FLAGS.num_draws))
    print(f"{name:10s} all-gallery {full}")
    print(f"{name:10s} {single}")
    return {"all_gallery": full.as_dict(), "single_shot": single.as_dict()}


def main(argv):
    del argv
    data = _load()
    flat = {part: extract.lomo_flat(data[f"{part}_lomo"]).astype(np.float32)
            for part in ("train", "query", "gallery")}
    results = {"euclidean": _report("euclidean", evaluation.pairwise_distance(
        flat["query"], flat["gallery"], metric="euclidean"), data)}
    start = time.perf_counter()
    model = XQDA(regularizer=FLAGS.regularizer, dims=FLAGS.dims).fit(
        flat["train"], data["train_pids"], data["train_camids"])
    fit_s = time.perf_counter() - start
    print(f"XQDA: {model.projection.shape[1]} dims kept, fitted in {fit_s:.1f} s")
    results["xqda"] = _report("xqda", model.distance(flat["query"], flat["gallery"]), data)
    results["xqda"].update(dims=int(model.projection.shape[1]), fit_seconds=fit_s,
                           regularizer=FLAGS.regularizer)
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"Wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main)
