"""Embeds a folder of person crops with a zoo model (or a run) into a searchable gallery index.

Example:
  python tools/index.py --zoo=rank_triplet_mobilenetv2_cuhk03 --images=crops/ --out=gallery/
  python tools/search.py --index=gallery/ --query=person.jpg --top_k=10 --out=ranked.png

Restartable: embeddings are written to <out>/embeddings/ in chunks of --chunk_size images as
they are computed; run the same command again after an interruption and only the missing chunks
are embedded. The index itself (see `tfreid.search`) is written last, atomically.
--factory picks exact ("Flat", default) or approximate search (e.g. "IVF1024,Flat" with
--search_params=nprobe=16); docs/RESULTS.md lists the recall each trades.
"""

from tfreid import cli  # first: quiet TensorFlow start-up

from absl import flags  # noqa: E402

from tfreid import indexing  # noqa: E402
from tfreid.errors import UserError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("zoo", None, "Zoo model name (see tfreid.zoo.list()).")
flags.DEFINE_string("run", None, "Or: a tools/train.py run folder (its model.keras).")
flags.DEFINE_string("images", None, "Folder of gallery images (searched recursively).")
flags.DEFINE_string("list", None, "Or: a text file with one image path per line.")
flags.DEFINE_string("out", None, "Index folder (created; reused to resume).", required=True)
flags.DEFINE_string("factory", "Flat", "faiss index factory string: Flat (exact), IVF<n>,Flat, "
                    "IVF<n>,PQ<m>x4fs, HNSW32, ...")
flags.DEFINE_enum("metric", "euclidean", ["euclidean", "cosine"], "Distance returned by searches.")
flags.DEFINE_string("search_params", "", "faiss search parameters stored with the index, e.g. "
                    "nprobe=16 (IVF) or efSearch=128 (HNSW).")
flags.DEFINE_enum("ids", "none", ["none", "market", "duke"], "Parse person and camera ids from "
                  "Market-1501 (0002_c1s1_000451_03.jpg) or Duke (0005_c2_f0046985.jpg) names.")
flags.DEFINE_integer("chunk_size", 2048, "Images per saved embedding chunk.")
flags.DEFINE_integer("batch_size", 64, "Images per model call.")
flags.DEFINE_integer("seed", 0, "Seed of the training sample of IVF / PQ indexes.")


def main(argv):
    del argv
    if bool(FLAGS.zoo) == bool(FLAGS.run):
        raise UserError("give exactly one of --zoo=NAME or --run=RUN_DIR")
    if bool(FLAGS.images) == bool(FLAGS.list):
        raise UserError("give exactly one of --images=DIR or --list=FILE")
    paths = indexing.image_paths(FLAGS.images, FLAGS.list)
    model = indexing.load_model(FLAGS.zoo, FLAGS.run)
    index = indexing.build_resumable(
        model, paths, FLAGS.out, factory=FLAGS.factory, metric=FLAGS.metric,
        search_params=FLAGS.search_params, ids=FLAGS.ids, chunk_size=FLAGS.chunk_size,
        batch_size=FLAGS.batch_size, seed=FLAGS.seed)
    print(f"Wrote {FLAGS.out}: {index}")


if __name__ == "__main__":
    cli.run(main)
