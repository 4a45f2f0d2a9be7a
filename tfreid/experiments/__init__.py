"""Experiments end to end, above models, training, evaluation and viz: a CNN run (`cnn`), a
stripe-feature run (`stripes`), and a finished run folder's pictures (`run_pictures`)."""
