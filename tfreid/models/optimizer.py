"""The paper's optimiser recipe for the stripe models (Varior et al., ECCV 2016, Sec. 4.1),
used with every objective of `tfreid.training.stripes`."""

from __future__ import annotations

import keras


def siamese_optimizer(learning_rate: float = 1e-3, decay_rate: float = 0.95,
                      steps_per_epoch: int = 1) -> keras.optimizers.RMSprop:
    """RMSProp as in the paper: rho 0.95, gradients clipped element-wise at 5.

    The learning rate is multiplied by `decay_rate` once per epoch (staircase exponential
    decay; decay_rate=1 keeps it constant).

    Args:
      learning_rate: initial learning rate.
      decay_rate: per-epoch factor in (0, 1].
      steps_per_epoch: optimizer steps (batches) in one epoch.
    """
    if not 0.0 < decay_rate <= 1.0:
        raise ValueError(f"decay_rate must be in (0, 1], got {decay_rate}")
    if steps_per_epoch < 1 or learning_rate <= 0:
        raise ValueError(f"need learning_rate > 0 and steps_per_epoch >= 1, "
                         f"got {learning_rate}, {steps_per_epoch}")
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=int(steps_per_epoch), decay_rate=decay_rate, staircase=True)
    return keras.optimizers.RMSprop(learning_rate=schedule, rho=0.95, clipvalue=5.0)
