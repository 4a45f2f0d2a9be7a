"""tools/train.py's flags come from one table (tfreid.train_flags), which publish also reads."""

import json
from pathlib import Path

import pytest
from absl import flags

from tfreid import train_flags

ROOT = Path(__file__).resolve().parents[1]


def test_define_makes_every_flag_of_the_table_with_its_default():
    values = flags.FlagValues()
    train_flags.define(values)
    assert set(values) == {f.name for f in train_flags.FLAGS_TABLE}
    for flag in train_flags.FLAGS_TABLE:
        assert values[flag.name].default == flag.default, flag.name
    assert values["loss"].parser.enum_values == list(
        next(f for f in train_flags.FLAGS_TABLE if f.name == "loss").choices)


def test_recorded_flags_leave_out_paths_and_execution_settings():
    recorded = {g: set(train_flags.recorded(g)) for g in train_flags.GROUPS}
    assert not ({"out", "data_dir", "resume"} & recorded["shared"])
    assert not ({"colornames"} & recorded["stripe"])
    assert not ({"weights_dir", "strategy", "mixed_precision"} & recorded["cnn"])
    assert {"seed", "margin", "p", "k"} <= recorded["shared"] and "train_from" in recorded["cnn"]
    with pytest.raises(ValueError, match="group must be one of"):
        train_flags.recorded("gan")


def test_every_committed_card_records_only_flags_of_the_table():
    names = {f.name for f in train_flags.FLAGS_TABLE}
    for path in sorted((ROOT / "zoo" / "cards").glob("*.json")):
        card = json.loads(path.read_text())
        assert set(card["training"].get("flags", {})) <= names, path.name


def test_no_flag_default_disagrees_with_a_config_field_of_its_name():
    """A shared flag whose default depends on the model is None (the dataclass decides); a
    group's own flag may carry a default only if it equals its config field's."""
    import dataclasses

    from tfreid.training.cnn import CNNTrainConfig
    from tfreid.training.stripes import StripeTrainConfig

    configs = {"stripe": [StripeTrainConfig], "cnn": [CNNTrainConfig],
               "shared": [StripeTrainConfig, CNNTrainConfig]}
    for flag in train_flags.FLAGS_TABLE:
        if flag.default is None:
            continue
        for config in configs[flag.group]:
            field = {f.name: f for f in dataclasses.fields(config)}.get(flag.name)
            if field is None:
                continue
            config_default = field.default
            if flag.kind in ("string", "enum") and config_default is None:
                continue  # "" / "none" on the command line spell the config's None
            assert flag.default == config_default, (flag.name, config.__name__)
