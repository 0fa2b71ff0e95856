"""Library side of the analysis chapters: the feature stress test and the fixed-direction effect."""
from .feature_stress import ChannelActivationBIM, ChannelStats, channel_activations, clean_channel_stats, feature_stress
from .fixed_direction import (
                             ClassGaussian,
                             classifier_weights,
                             feature_gradient,
                             feature_gradient_check,
                             fixed_direction_frame,
                             pca_frame,
)

__all__ = [
    "ChannelActivationBIM",
    "ChannelStats",
    "ClassGaussian",
    "channel_activations",
    "classifier_weights",
    "clean_channel_stats",
    "feature_gradient",
    "feature_gradient_check",
    "feature_stress",
    "fixed_direction_frame",
    "pca_frame",
]
