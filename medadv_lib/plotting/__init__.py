"""The book's figures in the house style, and the helpers chapters call to show them.

* :mod:`.style`: palette, matplotlib settings, :func:`new_figure`, :func:`show`,
  :func:`save_figure`, :func:`table` (display formatting of a DataFrame);
* :mod:`.data`: sample grids, class balance, training histories, execution times;
* :mod:`.analysis`: accuracy under attack, the stress test and the scale study, the fixed-direction effect;
* :mod:`.detection`: detector heat-maps and ROC curves;
* :mod:`.smia`: the SMIA chapter (accuracy under four attacks, loss bands, perturbations, beta2);
* :mod:`.risk`: the risk chapter (risk heat-map, risk against the budget and UAD's FPR).

The DataFrames the tables show are built in :mod:`medadv_lib.tables`; nothing here computes a
result. A new chapter adds its figures as a module here.

Typical chapter use::

    from medadv_lib import plotting
    plotting.use_style()
    plotting.show(plotting.sample_grid(ds.train.images, ds.train.labels, ds.classes, title=ds.name))
"""
from .analysis import cosine_plot, pca_plot, robustness_plot, scale_plot, stress_plot, trajectory_plot
from .data import class_balance_plot, history_plot, pick_per_class, sample_grid, timings_plot
from .defenses import regime_robustness_plot, uad_embedding_plot
from .detection import detection_heatmap, roc_figure
from .risk import risk_budget_plot, risk_fpr_plot, risk_heatmap
from .smia import ATTACK_COLORS, attack_curves_plot, beta2_plot, loss_trace_plot, perturbation_grid
from .style import (DOMAIN_COLORS, PALETTE, SPLIT_COLORS, STYLE, TABLE_STYLES, dataset_colors, natural_datasets,
                    new_figure, save_figure, show, table, use_style)

__all__ = ["ATTACK_COLORS", "DOMAIN_COLORS", "attack_curves_plot", "beta2_plot", "loss_trace_plot", "perturbation_grid", "PALETTE", "SPLIT_COLORS", "STYLE", "TABLE_STYLES", "class_balance_plot", "cosine_plot",
           "dataset_colors", "detection_heatmap", "history_plot", "natural_datasets", "new_figure", "pca_plot",
           "pick_per_class", "regime_robustness_plot", "risk_budget_plot", "risk_fpr_plot", "risk_heatmap", "robustness_plot", "uad_embedding_plot", "roc_figure", "sample_grid", "scale_plot", "save_figure", "show", "stress_plot",
           "table", "timings_plot", "trajectory_plot", "use_style"]
