"""Model zoo with named feature taps, training loop and evaluation."""
from .feature_model import PENULTIMATE, FeatureModel
from .training import evaluate, predict_proba, train_model
from .zoo import ARCHITECTURES, build_model, model_from_spec

__all__ = ["ARCHITECTURES", "PENULTIMATE", "FeatureModel", "build_model", "evaluate", "model_from_spec", "predict_proba",
           "train_model"]
