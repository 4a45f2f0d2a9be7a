"""Pictures of results: training curves, CMC curves, ranked lists, LSTM gate heat maps. A run
folder's pictures are drawn by `tfreid.experiments.run_pictures` (which loads models).

Modules: `curves` (training index / history, CMC), `ranked` (ranked lists), `gates` (gate heat
maps, paper Fig. 3), `images` (loading and mosaic helpers).
Importing this package does not import TensorFlow.
"""

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers

from tfreid.viz.curves import (  # noqa: E402
    CMC_PROTOCOLS, TRAINING_INDEX, cmc_curves, plot_cmc, plot_history, plot_training_index)
from tfreid.viz.gates import even_row_spans, lomo_row_spans, plot_gate_heatmaps  # noqa: E402
from tfreid.viz.ranked import RankedLayout, plot_ranked_lists, valid_ranking  # noqa: E402

__all__ = ["CMC_PROTOCOLS", "TRAINING_INDEX", "RankedLayout", "cmc_curves", "even_row_spans",
           "lomo_row_spans", "plot_cmc", "plot_gate_heatmaps", "plot_history",
           "plot_ranked_lists", "plot_training_index", "valid_ranking"]
