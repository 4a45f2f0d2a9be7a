"""Extracts LOMO and/or Colour Names stripe features of a dataset into a compressed .npz.

Example:
  python tools/extract_features.py --dataset=cuhk03_pair1 --data_dir=$TFREID_DATA \
      --features=lomo,cn --out=out/cuhk03_pair1_features.npz

Your own folder (see tools/train.py): --dataset=folder --data_dir=my_data --folder_pattern=REGEX.
The file format is described in `tfreid.features.extract`.
"""

from tfreid import cli  # first: quiet TensorFlow start-up

import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from tfreid import paths  # noqa: E402
from tfreid.errors import UserError  # noqa: E402
from tfreid.features import colornames, extract  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "cuhk03_pair1", "Dataset name for tfreid.data.datasets.build.")
flags.DEFINE_string("data_dir", None, "Dataset root (default: $TFREID_DATA).")
flags.DEFINE_list("features", ["lomo", "cn"], "Features to extract: lomo, cn.")
flags.DEFINE_string("out", None, "Output .npz file.", required=True)
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_string("w2c", None, "Colour Names table (.npy/.mat or folder); default "
                    "<--data_dir>/colornames, else $TFREID_DATA/colornames.")
flags.DEFINE_string("codebook", None, "Colour Names codebook .npy [num_words, 11]; default: fit "
                    "one by k-means on the train images.")
flags.DEFINE_string("save_codebook", None, "Also write the (fitted) codebook to this .npy.")
flags.DEFINE_integer("num_words", 350, "Codebook size when fitting.")
flags.DEFINE_integer("codebook_images", 1000, "Train images sampled to fit the codebook.")
flags.DEFINE_enum("dtype", "float32", ["float32", "float16"], "Stored feature dtype.")
flags.DEFINE_integer("seed", 0, "Seed of the codebook image sample and k-means.")
cli.define_dataset_flags()


def main(argv):
    del argv
    if not FLAGS.features or set(FLAGS.features) - {"lomo", "cn"}:
        raise UserError(f"--features={','.join(FLAGS.features)}: expected lomo, cn or lomo,cn.")
    table = codebook = None
    if "cn" in FLAGS.features:  # checked before the (long) dataset check and extraction
        table = colornames.load_w2c(paths.colornames_table(FLAGS.w2c, FLAGS.data_dir))
        if FLAGS.codebook:
            codebook = colornames.validate_codebook(np.load(FLAGS.codebook, allow_pickle=False))
    split = cli.build_dataset(FLAGS.dataset, FLAGS.data_dir)
    print(split.summary())
    start = time.perf_counter()
    splits, metadata = extract.extract_dataset(
        split, FLAGS.features, FLAGS.batch_size, table=table, codebook=codebook,
        num_words=FLAGS.num_words, codebook_images=FLAGS.codebook_images, seed=FLAGS.seed,
        dtype=np.dtype(FLAGS.dtype))
    elapsed = time.perf_counter() - start
    if FLAGS.save_codebook and "cn_codebook" in metadata:
        np.save(FLAGS.save_codebook, metadata["cn_codebook"])
    extract.save_features(FLAGS.out, split.name, splits, metadata)
    total = sum(len(s["paths"]) for s in splits.values())
    print(f"Wrote {FLAGS.out}: {total} images, features {FLAGS.features}, "
          f"{elapsed:.1f} s extraction ({total / max(elapsed, 1e-9):.0f} images/s).")


if __name__ == "__main__":
    cli.run(main)
