"""Does a zoo model's accuracy depend on who decodes the images? Card metrics by reader.

For each committed zoo model (or --zoo), its card's test split (dataset and loader options as the
card records them: CUHK03 pair 1, VIPeR split 0, ...) is embedded four ways and evaluated:
  - files:   `EmbeddingModel.embed_files` (tfreid.images, what tools/evaluate.py and the card use);
  - pil:     arrays read by the user's PIL, `np.asarray(Image.open(p).convert("RGB"))`, to `embed`;
  - opencv:  arrays read by the user's OpenCV, `cv2.imread` BGR -> RGB, to `embed`;
  - tf_fast: arrays decoded by `tf.io.decode_image` (JPEG with TensorFlow's default fast IDCT),
             what tfreid used before it read images through tfreid.images (it rejects VIPeR's
             BMPs: "-" then).
Prints all-gallery rank-1 / mAP of the serving embedding and the channel-fused scores for each.
Needs TFREID_DATA (or --data_dir) with each card's dataset; skips a model whose data is absent.

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
    if not args.data_dir:
        print("skipped: no --data_dir / TFREID_DATA")
        return
    import cv2
    import tensorflow as tf
    from PIL import Image

    from tfreid import zoo
    from tfreid.data import datasets
    from tfreid.data.records import arrays
    from tfreid.evaluation import distance_matrix, evaluate
    from tfreid.evaluation.protocols import fuse_scores

    readers = {
        "pil": lambda p: np.asarray(Image.open(p).convert("RGB")),
        "opencv": lambda p: cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
        "tf_fast": lambda p: tf.io.decode_image(tf.io.read_file(p), channels=3,
                                                expand_animations=False).numpy(),
    }
    print(f"{datetime.date.today()} {platform.machine()} {os.cpu_count()} cores")
    names = args.zoo or zoo.list(with_weights=True)
    for name in names:
        model = zoo.load(name)
        card = model.card["metrics"]["zoo"]
        if not os.path.isdir(os.path.join(args.data_dir, card["dataset"])):
            print(f"{name}: skipped, no {card['dataset']} under {args.data_dir}")
            continue
        split = datasets.build(card["dataset"], args.data_dir, **card.get("dataset_options", {}))
        q_paths, q_pids, q_cams = arrays(split.query)
        g_paths, g_pids, g_cams = arrays(split.gallery)
        print(f"{name}: {card['dataset']} {card.get('dataset_options', {})}, {len(q_paths)} query / "
              f"{len(g_paths)} gallery images", flush=True)
        embedded = {"files": (model.embed_files(q_paths, with_raw=True),
                              model.embed_files(g_paths, with_raw=True))}
        for reader, read in readers.items():
            try:
                embedded[reader] = tuple(model.embed([read(p) for p in paths], with_raw=True)
                                         for paths in (q_paths, g_paths))
            except tf.errors.InvalidArgumentError:
                print(f"{name:36s} {reader:8s} cannot decode these files", flush=True)
        for reader, ((q_emb, q_raw), (g_emb, g_raw)) in embedded.items():
            emb = evaluate(distance_matrix(q_emb, g_emb), q_pids, g_pids, q_cams, g_cams)
            line = f"{name:36s} {reader:8s} embedding R1 {100 * emb.rank(1):5.2f} mAP {100 * emb.mAP:5.2f}"
            if len(q_raw) > 1:
                fused = evaluate(fuse_scores([distance_matrix(q_raw[c], g_raw[c]) for c in q_raw]),
                                 q_pids, g_pids, q_cams, g_cams)
                line += f"  fused R1 {100 * fused.rank(1):5.2f} mAP {100 * fused.mAP:5.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
