"""The one shape of every tfreid Keras loss: a registered, thin wrapper of its loss function.

Modelled on Keras' `LossFunctionWrapper` (the base of `keras.losses.MeanSquaredError` and
friends): a subclass names its function `fn(y_true, y_pred, **options)`, and its constructor
takes that function's options, with the function's own defaults, plus the keyword-only `name`,
`reduction` and `dtype`. `get_config` returns exactly those, so `cls.from_config(get_config())`
and `keras.losses.deserialize(keras.losses.serialize(loss))` rebuild the loss.

What `reduction` and `sample_weight` mean:

* Per-sample losses (`per_sample = True`: `contrastive_pair_loss` gives one value per pair,
  [batch]) are Keras losses like any other: `sample_weight` [batch] weights each value and
  `reduction` reduces them.
* Batch-level losses give one scalar per batch: the list-wise losses average terms (triplets,
  pairs, quadruplets, anchors, queries) each of which depends on the whole batch, and
  `classification_loss` is already a mean over the batch. There is no per-sample value left
  to weight or reduce, so these accept only the default reduction "sum_over_batch_size"
  (which returns the scalar as it is) and no `sample_weight`; anything else raises ValueError
  instead of silently doing nothing. To weight identities or images, sample the batches so.
"""

from __future__ import annotations

import inspect

import keras

DEFAULT_REDUCTION = "sum_over_batch_size"
_LOSS_ARGUMENTS = ("name", "reduction", "dtype")


class LossFunctionWrapper(keras.losses.Loss):
    """Base of the tfreid loss classes: calls `fn(y_true, y_pred, **options)`.

    Subclasses set `fn = staticmethod(the_function)` and may set `per_sample` (see the module
    docstring), `default_reduction`, `default_name` (else the function's name) and
    `option_defaults` (defaults that differ from the function's). The constructor's signature,
    `inspect.signature(cls)`, is the function's options followed by name, reduction and dtype;
    each option is also an attribute (`loss.margin`).
    """

    fn = None
    per_sample = False
    default_reduction = DEFAULT_REDUCTION
    default_name: str | None = None
    option_defaults: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.fn is None:
            return
        options = list(inspect.signature(cls.fn).parameters.values())[2:]  # after y_true, y_pred
        clash = {p.name for p in options} & set(_LOSS_ARGUMENTS)
        if clash:
            raise TypeError(f"{cls.__name__}: options {sorted(clash)} of {cls.fn.__name__} clash "
                            "with the keras.losses.Loss arguments")
        options = [p.replace(default=cls.option_defaults.get(p.name, p.default)) for p in options]
        keyword = inspect.Parameter.KEYWORD_ONLY
        cls.__signature__ = inspect.Signature(options + [
            inspect.Parameter("name", keyword, default=cls.default_name or cls.fn.__name__),
            inspect.Parameter("reduction", keyword, default=cls.default_reduction),
            inspect.Parameter("dtype", keyword, default=None)])

    def __init__(self, *args, **kwargs):
        bound = self.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        name, reduction, dtype = (arguments.pop(key) for key in _LOSS_ARGUMENTS)
        if not self.per_sample and reduction != DEFAULT_REDUCTION:
            raise ValueError(
                f"{type(self).__name__} is a batch-level loss (one scalar per batch): only "
                f"reduction={DEFAULT_REDUCTION!r} is supported, got {reduction!r}")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        defaults = self.__signature__.parameters
        self._option_names = tuple(arguments)
        for key, value in arguments.items():
            # Plain Python numbers (from flags or numpy) keep configs JSON-able and ops in float32.
            default = defaults[key].default
            setattr(self, key, type(default)(value) if type(default) in (bool, float) else value)

    def options(self) -> dict:
        """The keyword arguments passed to `fn`."""
        return {key: getattr(self, key) for key in self._option_names}

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None and not self.per_sample:
            raise ValueError(
                f"{type(self).__name__} is a batch-level loss (one scalar per batch, no "
                "per-sample values): sample_weight is not supported; weight samples through "
                "the batch sampler instead")
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.options())

    def get_config(self):
        return {**super().get_config(), **self.options()}

    def __repr__(self):
        options = ", ".join(f"{key}={value!r}" for key, value in self.options().items())
        return f"<{type(self).__name__}({options})>"
