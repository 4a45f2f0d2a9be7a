"""LOMO + Euclidean and LOMO + XQDA (Liao et al., CVPR 2015) on a dataset's query/gallery.

XQDA is fitted on the train split (two camera views: the smallest camera id vs the others);
the query x gallery distances are evaluated with all-gallery CMC/mAP ("market" AP convention)
and the single-shot CMC (one gallery image per identity, mean over draws with seeds 0-9).

Example:
  python tools/extract_features.py --dataset=cuhk03_pair1 --features=lomo --out=out/lomo.npz
  python tools/lomo_xqda.py --features_file=out/lomo.npz --out=out/lomo_xqda.json
(without --features_file the LOMO features are extracted first, from --dataset/--data_dir).

Random-split protocols (VIPeR, CUHK01: two cameras, seeded identity splits): --num_splits=N
extracts LOMO once for every image, then for each split k = 0..N-1 (the loader's
``split_index=k, num_splits=N`` and the --<dataset>_* options, e.g. --viper_direction,
--viper_seed) fits XQDA on the split's
train identities and evaluates its query x gallery; prints and saves (--out) every split and the
mean +- std. The official VIPeR protocol (Liao et al.'s Demo_XQDA.m: probe camera B, gallery A):
  python tools/lomo_xqda.py --dataset=viper --num_splits=10 --viper_direction=b2a --out=out/viper.json
"""

from tfreid import cli  # first: quiet TensorFlow start-up

import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from tfreid import evaluation  # noqa: E402
from tfreid.errors import UserError  # noqa: E402
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
flags.DEFINE_integer("num_splits", None, "Run a random-split protocol over this many seeded "
                     "splits of --dataset (e.g. 10 for VIPeR) and report mean +- std.")
flags.DEFINE_enum("xqda_solver", "auto", ["auto", "dense", "lanczos", "svd"],
                  "XQDA eigen-solver ('svd': the reference code's SVD, see models/xqda.py).")
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


def _split(index: int):
    from tfreid.data import datasets
    # The split's seed and direction come from the dataset's own flags (--viper_seed, ...).
    options = {**cli.dataset_kwargs(FLAGS.dataset), "split_index": index,
               "num_splits": FLAGS.num_splits}
    return datasets.build(FLAGS.dataset, FLAGS.data_dir, check_images=index == 0, **options)


def _split_protocol():
    """LOMO once for all images, then XQDA per split; returns the results dict."""
    first = _split(0)
    paths = sorted({r.path for part in (first.train, first.query, first.gallery) for r in part})
    print(f"{FLAGS.dataset}: LOMO of {len(paths)} images")
    lomo = extract.extract(paths, {"lomo": extract.lomo_extractor()})["lomo"]
    flat = extract.lomo_flat(lomo).astype(np.float32)
    row = {path: i for i, path in enumerate(paths)}
    per_split = []
    for k in range(FLAGS.num_splits):
        split = first if k == 0 else _split(k)
        idx = {part: np.array([row[r.path] for r in getattr(split, part)])
               for part in ("train", "query", "gallery")}
        ids = {part: (np.array([r.pid for r in getattr(split, part)]),
                      np.array([r.camid for r in getattr(split, part)])) for part in idx}
        model = XQDA(regularizer=FLAGS.regularizer, dims=FLAGS.dims, solver=FLAGS.xqda_solver)
        model.fit(flat[idx["train"]], *ids["train"])
        result = evaluation.evaluate(model.distance(flat[idx["query"]], flat[idx["gallery"]]),
                                     ids["query"][0], ids["gallery"][0], ids["query"][1],
                                     ids["gallery"][1], ap="market")
        print(f"split {k}: {result} ({model.projection.shape[1]} dims)")
        per_split.append({"split_index": k, "dims": int(model.projection.shape[1]),
                          "test_ids": sorted({int(r.pid) for r in split.query}),
                          **result.as_dict()})
    summary = {}
    for key in ("rank1", "rank5", "rank10", "rank20", "mAP"):
        values = 100 * np.array([s[key] for s in per_split], np.float64)
        summary[key] = {"mean": float(values.mean()), "std": float(values.std())}
    return {"protocol": {"dataset": FLAGS.dataset, "num_splits": FLAGS.num_splits,
                         "dataset_options": cli.dataset_kwargs(FLAGS.dataset),
                         "regularizer": FLAGS.regularizer, "xqda_solver": FLAGS.xqda_solver,
                         "lomo_config": extract.LomoConfig().to_dict()},
            "splits": per_split, "mean_std_percent": summary}


def _write(results):
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"Wrote {FLAGS.out}")


def main(argv):
    del argv
    if FLAGS.num_splits:
        if FLAGS.features_file:
            raise UserError("--num_splits extracts its own features; drop --features_file.")
        results = _split_protocol()
        _write(results)   # saved before printed
        print(f"XQDA over {FLAGS.num_splits} splits (mean +- std, %): " + "  ".join(
            f"{k} {v['mean']:.1f} +- {v['std']:.1f}" for k, v in
            results["mean_std_percent"].items()))
        return
    data = _load()
    flat = {part: extract.lomo_flat(data[f"{part}_lomo"]).astype(np.float32)
            for part in ("train", "query", "gallery")}
    results = {"euclidean": _report("euclidean", evaluation.distance_matrix(
        flat["query"], flat["gallery"], metric="euclidean"), data)}
    start = time.perf_counter()
    model = XQDA(regularizer=FLAGS.regularizer, dims=FLAGS.dims, solver=FLAGS.xqda_solver).fit(
        flat["train"], data["train_pids"], data["train_camids"])
    fit_s = time.perf_counter() - start
    print(f"XQDA: {model.projection.shape[1]} dims kept, fitted in {fit_s:.1f} s")
    results["xqda"] = _report("xqda", model.distance(flat["query"], flat["gallery"]), data)
    results["xqda"].update(dims=int(model.projection.shape[1]), fit_seconds=fit_s,
                           regularizer=FLAGS.regularizer)
    _write(results)


if __name__ == "__main__":
    cli.run(main)
