"""medadv: adversarial attacks, detectors and defences for medical image classifiers."""
__version__ = "0.1.0"
