"""Does a zoo model's accuracy depend on who decodes the images? Card metrics by reader.

For each committed zoo model (or --zoo), the CUHK03 pair-1 test is embedded four ways and
evaluated with the card's protocol:
  - files:   `EmbeddingModel.embed_files` (tfreid.images, what tools/evaluate.py and the card use);
  - pil:     arrays read by the user's PIL, `np.asarray(Image.open(p).convert("RGB"))`, to `embed`;
  - opencv:  arrays read by the user's OpenCV, `cv2.imread` BGR -> RGB, to `embed`;
  - tf_fast: arrays decoded by `tf.io.decode_jpeg` with TensorFlow's default (fast) IDCT, what
             tfreid used before it read images through tfreid.images.
Prints all-gallery rank-1 / mAP of the serving embedding and the channel-fused scores for each.
Needs TFREID_DATA (or --data_dir) with cuhk03_pair1; skips otherwise.

  python benchmarks/decoders.py [--zoo=NAME] [--data_dir=DATA]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", action="append", help="zoo model(s) (default: every shipped one)")
    parser.add_argument("--data_dir", default=os.environ.get("TFREID_DATA"))
    args = parser.parse_args()
    if not args.data_dir or not os.path.isdir(os.path.join(args.data_dir, "cuhk03_pair1")):
        print("skipped: no cuhk03_pair1 under --data_dir / TFREID_DATA")
        return
    import cv2
    import tensorflow as tf
    from PIL import Image

    from tfreid import zoo
    from tfreid.data import datasets
    from tfreid.data.records import arrays
    from tfreid.evaluation import evaluate, pairwise_distance
    from tfreid.evaluation.protocols import fuse_scores

    readers = {
        "pil": lambda p: np.asarray(Image.open(p).convert("RGB")),
        "opencv": lambda p: cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
        "tf_fast": lambda p: tf.io.decode_jpeg(tf.io.read_file(p), channels=3).numpy(),
    }
    split = datasets.build("cuhk03_pair1", args.data_dir)
    q_paths, q_pids, q_cams = arrays(split.query)
    g_paths, g_pids, g_cams = arrays(split.gallery)
    print(f"{datetime.date.today()} {platform.machine()} {os.cpu_count()} cores; "
          f"{len(q_paths)} query / {len(g_paths)} gallery images")
    names = args.zoo or zoo.list(with_weights=True)
    for name in names:
        model = zoo.load(name)
        embedded = {"files": (model.embed_files(q_paths, with_raw=True),
                              model.embed_files(g_paths, with_raw=True))}
        for reader, read in readers.items():
            embedded[reader] = tuple(model.embed([read(p) for p in paths], with_raw=True)
                                     for paths in (q_paths, g_paths))
        for reader, ((q_emb, q_raw), (g_emb, g_raw)) in embedded.items():
            emb = evaluate(pairwise_distance(q_emb, g_emb), q_pids, g_pids, q_cams, g_cams)
            line = f"{name:36s} {reader:8s} embedding R1 {100 * emb.rank(1):5.2f} mAP {100 * emb.mAP:5.2f}"
            if len(q_raw) > 1:
                fused = evaluate(fuse_scores([pairwise_distance(q_raw[c], g_raw[c]) for c in q_raw]),
                                 q_pids, g_pids, q_cams, g_cams)
                line += f"  fused R1 {100 * fused.rank(1):5.2f} mAP {100 * fused.mAP:5.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
