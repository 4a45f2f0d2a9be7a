"""tfreid: a TensorFlow/Keras model zoo for person re-identification.

Data flows one way: images -> features -> models -> embeddings -> evaluation / zoo / export.
Sub-packages are imported lazily so that `import tfreid` stays cheap (no TensorFlow import
until a module that needs it is touched).
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("data", "features", "models", "losses", "evaluation", "training", "zoo", "serving",
               "export", "publish", "model_eval", "viz", "paths")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'tfreid' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
