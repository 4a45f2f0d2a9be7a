"""Searches a gallery index (tools/index.py) for a person: prints and draws the ranked list.

Example:
  python tools/search.py --index=gallery/ --query=person.jpg --top_k=10 --out=ranked.png

The model is the one the index was built with (its zoo name or run folder, recorded in the
index); --zoo / --run choose another copy of it, and an index built with another model, size or
metric is refused.
"""

from tfreid import cli  # first: quiet TensorFlow start-up

from absl import flags  # noqa: E402

from tfreid import indexing  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("index", None, "Index folder written by tools/index.py.", required=True)
flags.DEFINE_list("query", None, "Query image file(s), comma-separated.", required=True)
flags.DEFINE_integer("top_k", 10, "Gallery images per query.")
flags.DEFINE_string("out", None, "PNG of the ranked lists (optional).")
flags.DEFINE_string("zoo", None, "Zoo model (default: the one recorded in the index).")
flags.DEFINE_string("run", None, "Or: a tools/train.py run folder.")
flags.DEFINE_string("search_params", None, "Override the index's faiss search parameters.")
flags.DEFINE_integer("seed", 0, "Unused (search is deterministic); accepted like every tool.")


def main(argv):
    del argv
    index = indexing.open_index(FLAGS.index, FLAGS.zoo, FLAGS.run, FLAGS.search_params)
    result = indexing.search_files(index, FLAGS.query, FLAGS.top_k)
    if FLAGS.out:  # saved before printed
        indexing.draw(index, FLAGS.query, result, FLAGS.out)
    for query, paths, dists in zip(FLAGS.query, result.paths, result.distances):
        print(f"query {query}:")
        for rank, (path, dist) in enumerate(zip(paths, dists), start=1):
            print(f"  {rank:3d}  {dist:.4f}  {path}")
    if FLAGS.out:
        print(f"Wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main)
