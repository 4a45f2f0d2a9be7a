"""Pictures of results: training curves, CMC curves, ranked lists, LSTM gate heat maps, and all
of them for a run folder (`write_run_pictures`).

Modules: `curves` (training index / history, CMC), `ranked` (ranked lists), `gates` (gate heat
maps, paper Fig. 3), `run` (a run folder's pictures), `images` (loading and mosaic helpers).
Importing this package does not import TensorFlow.
"""

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers

from tfreid.viz.curves import (  # noqa: E402
    CMC_PROTOCOLS, TRAINING_INDEX, cmc_curves, plot_cmc, plot_history, plot_training_index)
from tfreid.viz.gates import even_row_spans, lomo_row_spans, plot_gate_heatmaps  # noqa: E402
from tfreid.viz.ranked import RankedLayout, plot_ranked_lists, valid_ranking  # noqa: E402
from tfreid.viz.run import (  # noqa: E402
    load_run_model, plot_cmc_of_runs, read_metrics, run_split, write_run_pictures)

__all__ = ["CMC_PROTOCOLS", "TRAINING_INDEX", "RankedLayout", "cmc_curves", "even_row_spans",
           "load_run_model", "lomo_row_spans", "plot_cmc", "plot_cmc_of_runs",
           "plot_gate_heatmaps", "plot_history", "plot_ranked_lists", "plot_training_index",
           "read_metrics", "run_split", "valid_ranking", "write_run_pictures"]
