"""Publishing a finished training run as a zoo entry (model file + card with sha256 and metrics).

    python tools/publish.py --run=runs/siamese_lstm_cuhk03 --name=siamese_lstm_cuhk03 \
        --dest=zoo --data_dir=DATA

writes `<dest>/models/<name>/model.keras` and `<dest>/cards/<name>.json`. The card's zoo
metrics are measured by `tfreid.model_eval.evaluate_model` on the published file, reloaded
through the zoo's integrity checks, i.e. by exactly what the stored command
(`tools/evaluate.py --zoo=<name> ...`) runs.
"""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import Callable

from tfreid import train_flags, zoo
from tfreid.rundir import RunDir

MAX_FILE_BYTES = 25 * 1024 * 1024  # committed models: each <= 25 MB (issue 6)

PAPERS = {
    "varior2016": "R. R. Varior, B. Shuai, J. Lu, D. Xu, G. Wang. A Siamese Long Short-Term Memory "
                  "Architecture for Human Re-Identification. ECCV 2016.",
    "chen2021": "Y. Chen, S. Duffner, A. Stoian, J.-Y. Dufour, A. Baskurt. List-wise learning-to-rank "
                "with convolutional neural networks for person re-identification. Machine Vision "
                "and Applications, 2021.",
}


# Test protocol of a card's training dataset, when the package's card template has none.
PROTOCOLS = {
    "cuhk03_pair1": "CUHK03 camera pair 1 (detected): train on train/ (100 identities held out for "
                    "early stopping), test on val/: query = first camera, gallery = second camera; "
                    "all-gallery CMC/mAP, single-shot CMC over 10 draws, multi-query.",
}


def _model_group(flags: dict) -> str:
    return "cnn" if flags.get("model") == "cnn" else "stripe"


def _architecture(flags: dict) -> dict:
    """The model's own settings of a run's flags (tools/train.py's flags of its model group)."""
    keys = train_flags.recorded(_model_group(flags))
    return {"model": flags.get("model"), **{k: flags[k] for k in keys if k in flags}}


def _paper(flags: dict) -> str:
    if flags.get("model") == "cnn" or flags.get("objective", "contrastive") != "contrastive":
        return PAPERS["chen2021"] if flags.get("model") == "cnn" else \
            f"{PAPERS['varior2016']} Trained with the list-wise loss of {PAPERS['chen2021']}"
    return PAPERS["varior2016"]


def _input_spec(model) -> dict:
    branches = [{"name": b.name, "height": b.size[0], "width": b.size[1], "dim": b.dim}
                for b in model.pipeline.branches]
    return {
        "images": "uint8 RGB [h, w, 3], any size (list or batch); float 0..255 also accepted",
        "preprocessing": "each image resized on its own to every branch's size (bilinear, "
                         "antialias) inside the model; LOMO / Color Names layers inside stripe models",
        "antialias": model.pipeline.antialias,
        "flip_average": model.pipeline.flip_average,
        "branches": branches,
        "embedding": {"dim": model.dim, "distance": "euclidean",
                      "normalisation": "per-branch L2 normalisation, concatenated in branch-name "
                                       "order, divided by sqrt(number of branches) (unit norm)"},
    }


def _run_metrics(run_dir: Path) -> dict:
    """Headline numbers of the run's own metrics.json (as the trainer measured them)."""
    from tfreid.model_eval import SUMMARY_KEYS

    run = RunDir(run_dir)
    if not run.metrics.is_file():
        return {}
    metrics = run.read_metrics()
    out = {}

    def add(key, rep):
        if isinstance(rep, dict) and "all_gallery" in rep:
            out[key] = {proto: {k: round(float(v), 6) for k, v in part.items()
                                if k in SUMMARY_KEYS and v is not None}
                        for proto, part in rep.items() if isinstance(part, dict)}

    for key in ("test", "test_reranked", "fused"):
        add(key, metrics.get(key))
    for channel, rep in metrics.get("channels", {}).items():
        add(f"channel_{channel}", rep)
    return out


def train_command(name: str, flagfile: Path, flags: dict) -> str:
    """The tools/train.py command of a card: the zoo's flagfile plus every recorded flag the run
    set otherwise (e.g. another --seed), so that the command reproduces this run.

    Flags the flagfile leaves to the model's default (None) are not restated."""
    from absl import flags as absl_flags

    command = (f"python tools/train.py --flagfile=zoo/configs/{name}.cfg --data_dir=DATA "
               f"--out=runs/{name}")
    if not flagfile.is_file():
        return command
    values = absl_flags.FlagValues()
    train_flags.define(values)
    values(["publish", f"--flagfile={flagfile}", "--out=unused"], known_only=True)
    recorded = {*train_flags.recorded("shared"), *train_flags.recorded(_model_group(flags))}
    for flag in train_flags.FLAGS_TABLE:
        given, ran = values[flag.name].value, flags.get(flag.name)
        if flag.name not in recorded or flag.name not in flags or given is None or given == ran:
            continue
        if flag.kind == "bool":
            command += f" --{'' if ran else 'no'}{flag.name}"
        else:
            command += f" --{flag.name}={','.join(ran) if isinstance(ran, list) else ran}"
    return command


def evaluate_command(name: str, dataset: str, settings: dict, options: dict | None = None) -> str:
    """The tools/evaluate.py command that reproduces a card's zoo metrics."""
    command = (f"python tools/evaluate.py --zoo={name} --dataset={dataset} --data_dir=DATA "
               f"--ap={settings['ap']} --single_shot_draws={settings['single_shot_draws']}")
    for argument, value in sorted((options or {}).items()):
        command += f" --{dataset}_{argument}={value}"
    if settings.get("rerank"):
        command += " --rerank"
    if not settings.get("multi_query", True):
        command += " --nomulti_query"
    return command + " --check_card"


def publish(run_dir, name: str, dest=None, *, data_dir=None, dataset: str | None = None,
            evaluate: bool = True, rerank: bool = False, ap: str = "market",
            single_shot_draws: int = 10, flip_average: bool = False,
            max_bytes: int = MAX_FILE_BYTES, log: Callable[[str], None] = print) -> Path:
    """Copies a finished run into a zoo root and writes its card.

    Args:
      run_dir: a tools/train.py run folder (model.keras, flags.json, metrics.json).
      name: the zoo name (a recipe card of that name in the package zoo, if any, provides the
        paper / protocol text; the flagfile is configs/<name>.cfg).
      dest: zoo root to write into (None: the local cache `$TFREID_HOME/zoo`; "zoo" in the
        repository for committed models).
      data_dir, dataset: test data to measure the card's metrics on (dataset default: the
        run's --dataset).
      evaluate: measure the zoo metrics (else the card carries only the run's own metrics).
      rerank, ap, single_shot_draws: evaluation settings (see tools/evaluate.py).
      flip_average: serve the model with test-time flip averaging (`tfreid.serving`; stored in
        the card as input.flip_average, so zoo.load and the exports use it).
      max_bytes: largest model file allowed.

    Returns:
      Path of the written card.
    """
    run_dir = Path(run_dir)
    dest = Path(dest) if dest is not None else zoo.cache_root()
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"zoo name must be letters, digits, '_' or '-', got {name!r}")
    package = zoo.package_root()
    into_package = package is not None and dest.resolve() == package.resolve()
    if not into_package and zoo.shipped_with_weights(name):
        raise ValueError(
            f"--name={name}: tfreid ships a zoo model of that name (with weights, in {package}), "
            f"and zoo.load({name!r}) would keep returning the shipped one; publish under another "
            "--name (or, to replace the shipped model, with --dest set to that zoo folder).")
    run = RunDir(run_dir)
    if not run.flags.is_file() or not run.model.is_file():
        raise FileNotFoundError(f"--run={run_dir} needs flags.json and model.keras "
                                "(a finished tools/train.py run)")
    flags = run.read_flags()
    model = zoo.from_run(run_dir, flip_average=flip_average)

    template = {}
    if package is not None and (package / "cards" / f"{name}.json").is_file():
        template = zoo.read_card(package / "cards" / f"{name}.json")

    rel = f"models/{name}/model.keras"
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name("model.tmp.keras")
    model.keras_model.save(tmp)  # re-saved: no optimizer state, only what serving needs
    size = tmp.stat().st_size
    if size > max_bytes:
        tmp.unlink()
        raise ValueError(f"{name}: model file of {size / 2**20:.1f} MiB exceeds the zoo limit of "
                         f"{max_bytes / 2**20:.0f} MiB")
    shutil.move(tmp, target)
    files = [{"path": rel, "sha256": zoo.sha256_of(target), "bytes": size}]
    flagfile = f"configs/{name}.cfg"
    if package is not None and (package / flagfile).is_file() and \
            (package / flagfile).resolve() != (dest / flagfile).resolve():
        (dest / flagfile).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / flagfile, dest / flagfile)  # the cache is self-contained

    dataset = dataset or flags.get("dataset")
    card = {
        "format_version": zoo.FORMAT_VERSION,
        "name": name,
        "paper": template.get("paper", _paper(flags)),
        "architecture": {**template.get("architecture", {}), **_architecture(flags)},
        "training": {**template.get("training", {}),
                     "dataset": flags.get("dataset"),
                     **({"protocol": PROTOCOLS[flags.get("dataset")]}
                        if "protocol" not in template.get("training", {})
                        and flags.get("dataset") in PROTOCOLS else {}),
                     "flagfile": f"configs/{name}.cfg",
                     "command": train_command(name, dest / flagfile, flags),
                     "flags": {k: flags[k] for k in (*train_flags.recorded("shared"),
                                                     *train_flags.recorded(_model_group(flags)))
                               if k in flags}},
        "input": _input_spec(model),
        "model": {"file": rel, "format": "keras"},
        "files": files,
        "metrics": {"units": "fractions in [0, 1]",
                    **{k: v for k, v in template.get("metrics", {}).items() if k == "paper_reference"},
                    "training_run": {"source": "the run's metrics.json (tools/train.py)",
                                     "results": _run_metrics(run_dir)}},
        "published": datetime.date.today().isoformat(),
    }
    card.pop("availability", None)
    card_path = zoo.write_card(card, dest)
    if evaluate:
        from tfreid.data import datasets

        # The run's loader options (e.g. VIPeR's split and direction) when testing on its dataset.
        options = datasets.recorded_options(dataset, flags) if dataset == flags.get("dataset") else {}
        card_path = measure_card(card_path, dest, dataset, data_dir,
                                 {"ap": ap, "single_shot_draws": single_shot_draws,
                                  "rerank": rerank, "multi_query": True}, log, options)
    log(f"published {name}: {target} ({size / 2**20:.2f} MiB), card {card_path}")
    return card_path


def measure_card(card_path, dest, dataset: str | None = None, data_dir=None,
                 settings: dict | None = None, log: Callable[[str], None] = print,
                 options: dict | None = None, flip_average: bool | None = None) -> Path:
    """Measures (or re-measures, e.g. after a change of the image path) a card's zoo metrics on
    the model file it points to, loaded through the zoo's integrity checks, and rewrites the card.

    Args:
      card_path: the card (.json) under `dest`.
      dest: its zoo root.
      dataset, settings: test dataset and evaluation settings (default: the card's own zoo
        metrics' dataset and settings).
      data_dir: test data root (default: $TFREID_DATA).
      options: the dataset loader's options (default: the card's own), e.g. {"split_index": 0,
        "direction": "b2a"}; a split's test identities are then listed in the card.
      flip_average: change the card's serving setting input.flip_average before measuring
        (None: keep it).

    Returns:
      Path of the rewritten card.
    """
    from tfreid.data import datasets
    from tfreid.model_eval import CARD_COMPARISON, evaluate_model, format_result, summarize

    card = zoo.read_card(card_path)
    if flip_average is not None:
        card["input"]["flip_average"] = bool(flip_average)
    previous = card.get("metrics", {}).get("zoo", {})
    dataset = dataset or previous.get("dataset") or card["training"]["dataset"]
    settings = settings or previous.get("settings") or {}
    options = dict(previous.get("dataset_options", {}) if options is None else options)
    split = datasets.build(dataset, data_dir, **options)
    model = zoo.load_card(card, dest)  # through the integrity checks
    result = evaluate_model(model, split, ap=settings.get("ap", "market"),
                            single_shot_draws=settings.get("single_shot_draws", 10),
                            rerank=settings.get("rerank", False),
                            multi_query=settings.get("multi_query", True))
    format_result(result, log)
    card["metrics"]["zoo"] = {"dataset": dataset, "settings": result["settings"],
                              "num_query": result["num_query"],
                              "num_gallery": result["num_gallery"],
                              "command": evaluate_command(card["name"], dataset, result["settings"],
                                                          options),
                              **({"dataset_options": options} if options else {}),
                              **({"test_identities": sorted({r.pid for r in split.query})}
                                 if any(o.argument == "split_index" for o in datasets.options(dataset))
                                 else {}),
                              "comparison": CARD_COMPARISON,
                              "measured": datetime.date.today().isoformat(),
                              "results": summarize(result)}
    return zoo.write_card(card, dest)
