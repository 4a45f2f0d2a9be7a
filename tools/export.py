"""Exports a run folder or a zoo model for serving: TF Serving SavedModel and/or ONNX.

  python tools/export.py --zoo=siamese_lstm_cuhk03 --base_dir=serving --version=1
  python tools/export.py --run=runs/x --base_dir=serving --model_name=reid --onnx=reid.onnx

SavedModel: <base_dir>/<model_name>/<version>/ with signatures serving_default (float32 images
[batch, H, W, 3] 0..255) and embed_encoded (string [batch] of JPEG/PNG bytes), both returning
{"embedding": [batch, dim]}. See docs/SERVING.md.
"""

from __future__ import annotations

from tfreid import cli  # first: quiet TensorFlow start-up

from absl import flags  # noqa: E402

from tfreid.errors import UserError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "A tools/train.py run folder (its model.keras).")
flags.DEFINE_string("zoo", None, "A zoo model name.")
flags.DEFINE_string("base_dir", None, "TF Serving model base folder (SavedModel export).")
flags.DEFINE_string("model_name", None, "Model folder / serving name (default: the zoo name or run folder name).")
flags.DEFINE_integer("version", None, "Version number (default: next free).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.DEFINE_string("onnx", None, "Also write an ONNX file here (needs tfreid[onnx]).")


def main(argv):
    del argv
    from tfreid import export, zoo

    if bool(FLAGS.run) == bool(FLAGS.zoo):
        raise UserError("give exactly one of --run=RUN_FOLDER or --zoo=NAME")
    if not FLAGS.base_dir and not FLAGS.onnx:
        raise UserError("nothing to do: give --base_dir (SavedModel) and/or --onnx=FILE")
    model = zoo.load(FLAGS.zoo) if FLAGS.zoo else zoo.from_run(FLAGS.run)
    if FLAGS.base_dir:
        path = export.export_saved_model(model, FLAGS.base_dir, FLAGS.model_name or model.name,
                                         FLAGS.version, overwrite=FLAGS.overwrite)
        print(f"SavedModel: {path} (embedding dim {model.dim})")
    if FLAGS.onnx:
        print(f"ONNX: {export.export_onnx(model, FLAGS.onnx)}")
    return 0


if __name__ == "__main__":
    cli.run(main)
