"""L-infinity adversarial attacks sharing one iterative loop.

``attack = PGD(model, eps=budget(2), seed=0); x_adv = attack(x, y)`` or
``result = attack.run(x, y, record=("loss", "linf"))`` for an :class:`AttackResult`. Every attack
sets eval mode and restores it, never mutates its input, and projects onto the eps-ball and [0, 1]
after every step. Loss terms that must work on any attack (HFC's constraint, adaptive attacks) are
penalties, ``PGD(model, eps=e, penalties=[p])`` (:mod:`medadv_lib.attacks.penalty`); new attacks
(SMIA) subclass :class:`IterativeAttack` and register themselves with :func:`register_attack` so
:func:`get_attack` finds them.
"""
from .base import ATTACKS, AttackResult, IterativeAttack, attack_mode, get_attack, register_attack
from .bim import BIM
from .budget import budget, format_budget
from .cw import CW, margin_loss
from .cw_l2 import CWL2
from .di import DI
from .fgsm import FGSM
from .mim import MIM
from .penalty import FeatureTargetPenalty, Penalty
from .pgd import PGD
from .smia import SMIA
from .hfc import HFCConstraint, KDPenalty, MahalanobisPenalty, default_hfc_layers, fit_hfc_mixtures, hfc

__all__ = [
    "ATTACKS",
    "AttackResult",
    "BIM",
    "CW",
    "CWL2",
    "DI",
    "FGSM",
    "FeatureTargetPenalty",
    "HFCConstraint",
    "IterativeAttack",
    "KDPenalty",
    "MIM",
    "MahalanobisPenalty",
    "PGD",
    "Penalty",
    "SMIA",
    "attack_mode",
    "budget",
    "default_hfc_layers",
    "fit_hfc_mixtures",
    "format_budget",
    "get_attack",
    "hfc",
    "margin_loss",
    "register_attack",
]
