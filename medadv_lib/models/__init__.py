"""Model zoo with named feature taps, training loop and evaluation."""
from .feature_model import FeatureModel
from .training import evaluate, predict_proba, train_model
from .utils import PENULTIMATE, as_float_images, eval_mode, frozen, model_device, resolve_layers, spatial_mean
from .zoo import ARCHITECTURES, build_model, model_from_spec

__all__ = ["ARCHITECTURES", "PENULTIMATE", "FeatureModel", "as_float_images", "build_model", "eval_mode", "evaluate",
           "frozen", "model_device", "model_from_spec", "predict_proba", "resolve_layers", "spatial_mean", "train_model"]
