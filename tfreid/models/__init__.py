"""Keras models: stripe-feature models (siamese LSTM, Eq. 8-9 MLP baselines) and their deploy
form, XQDA, CNN embeddings and the backbone converters.

Importing this package registers tfreid's custom layers with Keras, so saved `.keras` models
that use them load with `keras.saving.load_model` afterwards.
"""

from tfreid.models.backbones import BACKBONES, backbone_spec, build_backbone
from tfreid.models.convert_mobilenetv2 import load_imagenet_mobilenetv2
from tfreid.models.embedding import build_embedding_model
from tfreid.models.lstm_gates import gate_activations, gate_norms
from tfreid.models.mlp_baseline import build_stripe_mlp
from tfreid.models.mobilenetv2 import build_mobilenetv2
from tfreid.models.optimizer import siamese_optimizer
from tfreid.models.preprocess import ImagePreprocess
from tfreid.models.siamese import PairDistance, build_siamese, embedding_of
from tfreid.models.stripe_deploy import build_deploy_model, stripe_branches
from tfreid.models.stripe_lstm import build_stripe_lstm
from tfreid.models.torch_state_dict import load_state_dict

__all__ = [
    "BACKBONES", "ImagePreprocess", "PairDistance", "backbone_spec", "build_backbone",
    "build_deploy_model", "build_embedding_model", "build_mobilenetv2", "build_siamese",
    "build_stripe_lstm", "build_stripe_mlp", "embedding_of", "gate_activations", "gate_norms",
    "load_imagenet_mobilenetv2", "load_state_dict", "siamese_optimizer", "stripe_branches",
]
