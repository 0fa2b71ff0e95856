"""Defences of the SSAT work (Li, Pan & Zhu, ISBI 2021): training regimes NT, AT, GCE and SSAT."""
from .gce import guided_complement_entropy

__all__ = ["guided_complement_entropy"]
