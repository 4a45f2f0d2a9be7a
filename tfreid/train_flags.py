"""The flags of tools/train.py, declared once: `define` makes them absl flags, `recorded` tells
`tfreid.publish` which of a run's flags.json a zoo card keeps (the settings that made the model,
not where files were or how the run was executed).

Groups: "shared" (every model), "stripe" (--model=siamese_lstm / mlp), "cnn" (--model=cnn).
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

GROUPS = ("shared", "stripe", "cnn")


@dataclasses.dataclass(frozen=True)
class Flag:
    group: str
    name: str
    kind: str  # an absl DEFINE_<kind>: string, integer, float, bool, list, enum
    default: object
    help: str
    choices: tuple[str, ...] = ()
    recorded: bool = True  # kept in a zoo card; False for paths and execution settings
    required: bool = False


FLAGS_TABLE = (
    # Data and run
    Flag("shared", "dataset", "string", "synthetic", "Dataset name (see tfreid.data.names()); its "
         "loader's options are the --<dataset>_* flags (--helpfull)."),
    Flag("shared", "data_dir", "string", None, "Dataset folder or data root; default "
         "$TFREID_DATA (for 'synthetic': where to generate it).", recorded=False),
    Flag("shared", "out", "string", None, "Run folder (created).", recorded=False, required=True),
    Flag("shared", "seed", "integer", 0, "Seed of initialisation, sampling and the validation "
         "hold-out."),
    Flag("shared", "resume", "bool", False, "Continue the run in --out from its last checkpoint.",
         recorded=False),
    Flag("shared", "val_ids", "integer", 100, "Training identities held out for early stopping."),
    Flag("shared", "model", "enum", "siamese_lstm", "siamese_lstm / mlp: stripe-feature models; "
         "cnn: a CNN embedding.", choices=("siamese_lstm", "mlp", "cnn")),
    Flag("shared", "epochs", "integer", None, "Epochs at most (default: 20 stripe, 200 cnn)."),
    Flag("shared", "patience", "integer", None, "Early-stopping patience in epochs, 0 = off "
         "(default: 5 stripe, 0 cnn)."),
    Flag("shared", "learning_rate", "float", None, "Initial learning rate (default: 1e-3 stripe, "
         "1e-4 cnn)."),
    Flag("shared", "margin", "float", None, "Loss margin (default: 0.5 stripe contrastive, loss "
         "default for cnn)."),
    Flag("shared", "p", "integer", None, "Identities per P x K batch (default: 16 stripe list "
         "objectives, 32 cnn)."),
    Flag("shared", "k", "integer", None, "Images per identity in a P x K batch (default: 4)."),
    # Stripe models
    Flag("stripe", "features", "list", ["lomo", "cn"], "Feature channels, one network each, "
         "score-fused."),
    Flag("stripe", "hidden_units", "integer", 50, "LSTM units n (paper: 50 CUHK03/VIPeR, 25 "
         "Market-1501)."),
    Flag("stripe", "lstm_mode", "enum", "per_scale", "How the three LOMO scales are fed: one LSTM "
         "per scale, or one 40-row sequence.", choices=("per_scale", "one_sequence")),
    Flag("stripe", "mlp_layers", "integer", 1, "Layers of the Eq. 8-9 baseline (--model=mlp)."),
    Flag("stripe", "mlp_units", "integer", None, "Width of every baseline layer (default: rows x "
         "--hidden_units, the LSTM embedding's size)."),
    Flag("stripe", "mlp_activation", "string", "tanh", "Non-linearity f of the baseline."),
    Flag("stripe", "objective", "enum", "contrastive", "Stripe models: siamese pairs + "
         "contrastive loss, or P x K batches + a list loss.",
         choices=("contrastive", "rank_triplet", "rank_triplet_baseline", "batch_hard")),
    Flag("stripe", "lr_decay", "float", 0.95, "Per-epoch learning-rate factor (stripe models)."),
    Flag("stripe", "batch_size", "integer", 100, "Pairs per batch (contrastive stripe models)."),
    Flag("stripe", "negatives_per_positive", "integer", 2, "Hard negatives per positive of each "
         "image."),
    Flag("stripe", "lomo_normalize", "enum", "row", "LOMO normalisation.",
         choices=("row", "global")),
    Flag("stripe", "cn_words", "integer", 350, "Color Names codebook size."),
    Flag("stripe", "cn_stripes", "integer", 16, "Color Names stripes."),
    Flag("stripe", "init_from", "string", None, "Stripe models, transfer: a zoo model name or a "
         "run folder whose feature layers (Color Names codebook included) are reused and whose "
         "trained channel networks initialise this run (same architecture flags)."),
    Flag("stripe", "colornames", "string", None, "w2c table (.npy/.mat, or a folder holding "
         "one); default <--data_dir>/colornames/, else $TFREID_DATA/colornames/.",
         recorded=False),
    # CNN models
    Flag("cnn", "backbone", "string", "mobilenetv2", "keras.applications backbone name."),
    Flag("cnn", "weights", "string", "offline", "Backbone weights: none, imagenet, offline, or a "
         "path."),
    Flag("cnn", "weights_dir", "string", None, "Offline weights folder (default "
         "$TFREID_WEIGHTS).", recorded=False),
    Flag("cnn", "height", "integer", 256, "CNN input height."),
    Flag("cnn", "width", "integer", 128, "CNN input width."),
    Flag("cnn", "embedding_dim", "integer", 256, "CNN embedding size."),
    Flag("cnn", "loss", "enum", "rank_triplet", "CNN loss.",
         choices=("classification", "contrastive", "triplet", "quadruplet", "batch_hard",
                  "rank_triplet_baseline", "rank_triplet")),
    Flag("cnn", "weight_decay", "float", 5e-4, "L2 weight decay (CNN)."),
    Flag("cnn", "lr_step_epochs", "integer", 80, "CNN learning rate x0.1 every this many epochs."),
    Flag("cnn", "steps_per_epoch", "integer", None, "CNN batches per epoch (default: identities "
         "// p)."),
    Flag("cnn", "strategy", "enum", "default", "CNN: tf.distribute strategy: one device, every "
         "local GPU (MirroredStrategy), or one process per machine from TF_CONFIG "
         "(MultiWorkerMirroredStrategy; give each worker its own --out). List-wise losses see the "
         "global batch.", choices=("default", "mirrored", "multi_worker"), recorded=False),
    Flag("cnn", "mixed_precision", "enum", "", "CNN: 16-bit compute (GPUs); losses and ranking "
         "stay float32.", choices=("", "float16", "bfloat16"), recorded=False),
    Flag("cnn", "train_from", "string", None, "CNN partial fine-tuning (CPU budget): name of the "
         "backbone layer that begins the trained top, e.g. block_16_expand (MobileNetV2's last "
         "block, Conv_1, pooling, embedding). The frozen layers below run once per training "
         "image and its flip, cached in <out>/cache/; no random-crop augmentation. An invalid "
         "name lists the valid ones. Default (or an empty value, to override a flagfile): train "
         "the whole network."),
)


def define(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines every flag of FLAGS_TABLE in `flag_values`, as flags of the main program (so
    that tools/train.py --help lists them)."""
    for flag in FLAGS_TABLE:
        extra = {"required": True} if flag.required else {}
        extra["module_name"] = sys.argv[0]
        if flag.kind == "enum":
            flags.DEFINE_enum(flag.name, flag.default, list(flag.choices), flag.help,
                              flag_values=flag_values, **extra)
        else:
            getattr(flags, f"DEFINE_{flag.kind}")(flag.name, flag.default, flag.help,
                                                  flag_values=flag_values, **extra)


def recorded(group: str) -> tuple[str, ...]:
    """Names of the recorded flags of one group, in table order."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    return tuple(f.name for f in FLAGS_TABLE if f.group == group and f.recorded)
