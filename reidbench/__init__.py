"""reidbench: a robustness benchmark for person re-identification.

Occlusion, feature-map perturbations and adversarial metric attacks, measured on one harness
next to the published defenses, with reports and a CI regression check.
"""

__version__ = "0.1.0"
