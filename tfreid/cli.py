"""What every tools/ program shares: a quiet TensorFlow start-up, the dataset option flags, and
user errors as one line.

A tool imports this module before anything that imports TensorFlow, and runs through it:

    from tfreid import cli  # first: TensorFlow's log level is set before TensorFlow loads

    cli.define_dataset_flags()          # tools that take --dataset: --<dataset>_<option> flags
    ...
    split = cli.build_dataset(FLAGS.dataset, FLAGS.data_dir)
    ...
    if __name__ == "__main__":
        cli.run(main)

* Start-up: `TF_CPP_MIN_LOG_LEVEL` defaults to 2 (warnings and errors of TF's C++ core only),
  and the lines TensorFlow's libraries print while they load, before that level applies (once
  per library, so twice), are printed once.
* Errors: a user error (`tfreid.errors.UserError`, a zoo error, a flag that does not parse, and
  the ValueError / KeyError / OSError that tfreid's own code raises with a message) prints
  `Error: <message>` on one line and exits with status 2; `--verbose` or `TFREID_VERBOSE=1`
  shows its traceback. Any other exception is a bug and keeps its traceback. Ctrl-C prints
  `Interrupted.` and exits with status 130.
* Logs: TensorFlow's Python INFO lines (e.g. one "Sharding callback duration" per checkpoint)
  are hidden unless --verbose.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402  (after the environment: absl does not load TF)

from tfreid.errors import UserError  # noqa: E402

VERBOSE_ENV = "TFREID_VERBOSE"
USER_ERROR_EXIT = 2
FLAGS = flags.FLAGS
flags.DEFINE_bool("verbose", False, "Show the Python traceback of an error (also: "
                  f"{VERBOSE_ENV}=1) and TensorFlow's INFO log lines.")

_PACKAGE = Path(__file__).resolve().parent
_GLOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ ")


def _verbose() -> bool:
    if os.environ.get(VERBOSE_ENV, "").strip() not in ("", "0"):
        return True
    try:
        return bool(FLAGS.verbose)
    except flags.UnparsedFlagAccessError:
        return any(a in ("--verbose", "-verbose", "--verbose=true", "--verbose=1")
                   for a in sys.argv[1:])


def import_tensorflow_quietly():
    """Imports TensorFlow printing each of its start-up lines once (they come once per library).

    Returns:
      the tensorflow module.
    """
    if "tensorflow" in sys.modules or _verbose():
        import tensorflow as tf
        return tf
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded / captured)
        import tensorflow as tf
        return tf
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the device probe's lines join the banner
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            seen, lines = set(), []
            for line in capture.read().decode(errors="replace").splitlines():
                key = _GLOG_PREFIX.sub("", line)
                if key not in seen:
                    seen.add(key)
                    lines.append(line)
            if lines:
                print("\n".join(lines), file=sys.stderr, flush=True)
    return tf


# ----------------------------------------------------------------------------- dataset options


def define_dataset_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines one flag per loader option of every dataset (`tfreid.data.datasets.options`):
    --<dataset>_<argument>, typed as the loader's argument, listed by --helpfull."""
    from tfreid.data import datasets

    if "skip_bad_images" not in flag_values:
        flags.DEFINE_bool("skip_bad_images", False, "Leave unreadable image files out of the "
                          "dataset (listed on stderr, and in the run folder when training) "
                          "instead of refusing it.", flag_values=flag_values)
    for option in datasets.all_options():
        if option.flag in flag_values:
            continue
        module, func = datasets.loader_name(option.dataset)
        text = (f"--dataset={option.dataset} ({module}.{func}): {option.help}"
                + (" Required." if option.required else "")
                + (" An empty value gives None." if option.kind == "str" and option.optional
                   and option.default is not None else ""))
        define = {"int": flags.DEFINE_integer, "float": flags.DEFINE_float,
                  "bool": flags.DEFINE_bool, "str": flags.DEFINE_string}.get(option.kind)
        if define is not None:
            define(option.flag, option.default, text, flag_values=flag_values)
        else:  # "ints"
            default = None if option.default is None else [str(v) for v in option.default]
            flags.DEFINE_list(option.flag, default, text + " Comma-separated integers.",
                              flag_values=flag_values)
            flags.register_validator(
                option.flag, lambda v: v is None or all(re.fullmatch(r"-?\d+", s) for s in v),
                message=f"--{option.flag} must be comma-separated integers",
                flag_values=flag_values)


def dataset_kwargs(name: str, recorded: dict | None = None,
                   flag_values: flags.FlagValues = FLAGS) -> dict:
    """The loader options of dataset `name` given on the command line (or in a flagfile).

    Args:
      name: the chosen dataset.
      recorded: flag values a run recorded (its flags.json): its options of `name` are the
        defaults of those given now.

    Returns:
      {loader argument: value}, for `tfreid.data.datasets.build(name, root, **kwargs)`.

    Raises:
      UserError: an option of another dataset was given, or a required option is missing.
    """
    from tfreid.data import datasets

    try:
        own = datasets.options(name)
    except KeyError as err:
        raise UserError(err.args[0]) from None
    others = [o for o in datasets.all_options()
              if o.dataset != name and o.flag in flag_values and flag_values[o.flag].present]
    if others:
        listed = ", ".join(f"--{o.flag}" for o in own) or "none"
        raise UserError(
            f"--{others[0].flag} is an option of --dataset={others[0].dataset}, not of "
            f"--dataset={name} (whose options are: {listed}).")
    kwargs = datasets.recorded_options(name, recorded) if recorded else {}
    for option in own:
        if option.flag not in flag_values or not flag_values[option.flag].present:
            continue
        value = flag_values[option.flag].value
        if option.kind == "ints":
            value = tuple(int(v) for v in value)
        elif option.kind == "str" and option.optional and value == "":
            value = None
        kwargs[option.argument] = value
    missing = [o for o in own if o.required and o.argument not in kwargs]
    if missing:
        raise UserError(f"--dataset={name} needs --{missing[0].flag}: {missing[0].help}")
    return kwargs


def build_dataset(name: str, data_dir=None, recorded: dict | None = None, **build_options):
    """`tfreid.data.datasets.build(name, data_dir, **build_options, **loader options)`, the loader
    options and --skip_bad_images from the command line (see `dataset_kwargs`)."""
    from tfreid.data import datasets

    if "skip_bad_images" in FLAGS and FLAGS.is_parsed():
        build_options.setdefault("skip_bad_images", FLAGS.skip_bad_images)
    return datasets.build(name, data_dir, **build_options, **dataset_kwargs(name, recorded))


# ----------------------------------------------------------------------------- running


def is_user_error(err: BaseException) -> bool:
    """Whether `err` is a user's mistake whose message says it all (see the module docstring)."""
    from tfreid.zoo import ZooError

    if isinstance(err, (UserError, ZooError, flags.Error, app.UsageError)):
        return True
    if not isinstance(err, (ValueError, KeyError, OSError)):
        return False
    message = error_message(err)
    if len(message.split()) < 3:  # e.g. KeyError('x') of a dict lookup: a bug, not a message
        return False
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    raised_in = Path(tb.tb_frame.f_code.co_filename).resolve()
    main = Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] else None
    return _PACKAGE in raised_in.parents or (main is not None and raised_in.parent == main)


def error_message(err: BaseException) -> str:
    """The message of an exception on one line (a KeyError's without its quotes)."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]
    else:
        text = str(err)
    return " ".join(text.split()) or type(err).__name__


def _not_tensorflow_info(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not (
        record.name == "tensorflow" or f"{os.sep}tensorflow{os.sep}" in record.pathname)


def quiet_tensorflow_info() -> None:
    """Drops TensorFlow's Python INFO records, logged through its own logger or through absl's
    (e.g. "Sharding callback duration" at every checkpoint); tfreid's own INFO lines stay."""
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    absl_logger = logging.getLogger("absl")
    if _not_tensorflow_info not in absl_logger.filters:
        absl_logger.addFilter(_not_tensorflow_info)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as err:
        message = re.sub(r"^ERROR::?\s*", "", error_message(err))  # absl's own prefix
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


def run(main) -> None:
    """`absl.app.run(main)` with flag errors and user errors printed as `Error: ...` lines."""

    def guarded(argv):
        if not _verbose():
            quiet_tensorflow_info()
        try:
            return main(argv)
        except KeyboardInterrupt:
            if _verbose():
                raise
            print("Interrupted.", file=sys.stderr)
            return 130
        except Exception as err:  # noqa: BLE001  (sorted into user errors and bugs)
            if _verbose() or not is_user_error(err):
                raise
            sys.stdout.flush()
            print(f"Error: {error_message(err)}", file=sys.stderr)
            return USER_ERROR_EXIT

    app.run(guarded, flags_parser=_parse_flags)


import_tensorflow_quietly()
