r"""The scale of trained embeddings on a P x K batch of test images: a check for collapse.

  python tools/embedding_scale.py --run=runs/t2c_batch_hard_s0,runs/t2c_rank_triplet_s0

For each run (or zoo model), the raw embeddings of --p test identities x --k images each: mean
norm, mean squared distance of positive and negative pairs, the batch-hard terms (per anchor,
its hardest positive and hardest negative, squared distances) and the batch-hard hinge at
--margin. A collapsed embedding has hardest positive ~ hardest negative and the hinge ~ margin.
"""

from __future__ import annotations

from tfreid import cli  # first: quiet TensorFlow start-up

from absl import flags  # noqa: E402

from tfreid.errors import UserError  # noqa: E402

FLAGS = flags.FLAGS
cli.define_dataset_flags()
flags.DEFINE_list("run", [], "tools/train.py run folders.")
flags.DEFINE_list("zoo", [], "Zoo model names.")
flags.DEFINE_string("dataset", "cuhk03_pair1", "Dataset whose test images are embedded.")
flags.DEFINE_string("data_dir", None, "Dataset folder or data root (default $TFREID_DATA).")
flags.DEFINE_integer("p", 32, "Test identities (the first ones with --k images).", lower_bound=2)
flags.DEFINE_integer("k", 4, "Images per identity.", lower_bound=2)
flags.DEFINE_float("margin", 1.0, "Batch-hard margin of the reported hinge.")


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from tfreid import losses, zoo
    from tfreid.data.records import arrays
    from tfreid.losses.distances import identity_masks

    if not FLAGS.run and not FLAGS.zoo:
        raise UserError("give --run=RUN_FOLDER[,...] and/or --zoo=NAME[,...]")
    split = cli.build_dataset(FLAGS.dataset, FLAGS.data_dir)
    by_pid = {}
    for record in list(split.query) + list(split.gallery):
        by_pid.setdefault(record.pid, []).append(record)
    pids = [pid for pid in sorted(by_pid) if len(by_pid[pid]) >= FLAGS.k][:FLAGS.p]
    if len(pids) < 2:
        raise UserError(f"{FLAGS.dataset}: fewer than 2 test identities with --k={FLAGS.k} images")
    paths, labels, _ = arrays([r for pid in pids for r in by_pid[pid][:FLAGS.k]])
    models = [zoo.from_run(run) for run in FLAGS.run] + [zoo.load(name) for name in FLAGS.zoo]
    print(f"{len(pids)} ids x {FLAGS.k} images of {FLAGS.dataset}'s test split; squared distances")
    print(f"{'model':34s} {'norm':>7s} {'d2 pos':>8s} {'d2 neg':>8s} {'hardest pos':>12s} "
          f"{'hardest neg':>12s} {'hinge':>6s}  hardest pos < hardest neg")
    for name, model in zip(FLAGS.run + FLAGS.zoo, models):
        _, raw = model.embed_files(paths, 64, with_raw=True)
        for branch, emb in raw.items():
            emb = tf.constant(emb)
            d2 = losses.batch_squared_distances(emb).numpy()
            pos, neg = (m.numpy() for m in identity_masks(tf.constant(labels)))
            hardest_pos = np.where(pos, d2, 0.0).max(1)
            hardest_neg = np.where(neg, d2, np.inf).min(1)
            hinge = float(losses.batch_hard_triplet_loss(labels, emb, margin=FLAGS.margin))
            label = name if len(raw) == 1 else f"{name} [{branch}]"
            print(f"{label[-34:]:34s} {np.linalg.norm(emb, axis=1).mean():7.2f} {d2[pos].mean():8.2f} "
                  f"{d2[neg].mean():8.2f} {hardest_pos.mean():12.2f} {hardest_neg.mean():12.2f} "
                  f"{hinge:6.2f}  {np.mean(hardest_pos < hardest_neg):.0%}")
    return 0


if __name__ == "__main__":
    cli.run(main)
