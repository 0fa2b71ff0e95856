"""Defences of the SSAT work (Li, Pan & Zhu, ISBI 2021): the training regimes NT (cross-entropy,
:class:`medadv_lib.models.training.CrossEntropy`), AT, GCE and SSAT as objectives of
:func:`medadv_lib.models.train_model`, and the semi-supervised split."""
from .gce import guided_complement_entropy
from .objectives import SSAT, AdversarialTraining, GCETraining, fgsm_pair
from .split import SemiSupervisedSplit, balanced_indices, semi_supervised_split

__all__ = ["SSAT", "AdversarialTraining", "GCETraining", "SemiSupervisedSplit", "balanced_indices", "fgsm_pair",
           "guided_complement_entropy", "semi_supervised_split"]
