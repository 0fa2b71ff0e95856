"""Library side of the analysis chapters: the feature stress test, the fixed-direction effect and
accuracy under attack."""
from .direction import concat_results, direction_summary, fixed_direction_sweep, pca_view, penultimate_features
from .feature_stress import ChannelActivationBIM, ChannelStats, channel_activations, clean_channel_stats, feature_stress
from .fixed_direction import (
                             ClassGaussian,
                             classifier_weights,
                             feature_gradient,
                             feature_gradient_check,
                             fixed_direction_frame,
                             pca_frame,
)
from .robustness import accuracy, curve_from_examples, predictions, robustness_curve, robustness_table
from .stress import (
                     clean_layer_stats,
                     concat_labelled,
                     deep_intermediate_layer,
                     sample_channels,
                     stress_comparison,
                     stress_summary,
                     stress_sweep,
                     stress_verdict,
)

__all__ = [
    "ChannelActivationBIM",
    "ChannelStats",
    "ClassGaussian",
    "accuracy",
    "channel_activations",
    "classifier_weights",
    "clean_channel_stats",
    "clean_layer_stats",
    "concat_labelled",
    "concat_results",
    "curve_from_examples",
    "deep_intermediate_layer",
    "direction_summary",
    "feature_gradient",
    "feature_gradient_check",
    "feature_stress",
    "fixed_direction_frame",
    "fixed_direction_sweep",
    "pca_frame",
    "pca_view",
    "penultimate_features",
    "predictions",
    "robustness_curve",
    "robustness_table",
    "sample_channels",
    "stress_comparison",
    "stress_summary",
    "stress_sweep",
    "stress_verdict",
]
