"""Datasets as immutable records of (image path, person id, camera id), and the synthetic data.

    from tfreid import data
    split = data.build("cuhk03_pair1", "/path/to/data")     # or root=None: $TFREID_DATA
    data.generate("/tmp/synth")                             # synthetic Market-1501 layout
    split = data.build("synthetic", "/tmp/synth")

Importing this package loads no TensorFlow and no OpenCV; the image pipelines and pair samplers
live in `tfreid.data.pipeline` and `tfreid.data.pairs` (import them explicitly).
"""

from tfreid.data.datasets import build, get, names, register
from tfreid.data.records import DISTRACTOR_PID, JUNK_PID, ImageRecord, ReIDSplit, arrays, relabel

__all__ = ["build", "get", "names", "register", "generate", "ImageRecord", "ReIDSplit", "arrays",
           "relabel", "JUNK_PID", "DISTRACTOR_PID"]


def generate(*args, **kwargs):
    """Writes the synthetic dataset; see `tfreid.data.synthetic.generate`."""
    from tfreid.data import synthetic

    return synthetic.generate(*args, **kwargs)
