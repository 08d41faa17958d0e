"""Input-transformation defenses applied at inference, and the plumbing to attack through them.

``create_defense(name_or_chain, input_size=(H, W), **params)`` builds one by name (``"jpeg"``) or
a chain (``"cs+jpeg"``, applied left to right); ``DEFENSES`` lists them. Every registered defense
says whether it is random (the adaptive attacker uses EOT) and differentiable (if not, BPDA).
:class:`Defended` runs a model behind a defense, for oblivious extraction and adaptive attacks.
Adding a defense means one module below plus its import line here.
"""

from reidbench.defenses.adaptive import (
    Defended,
    apply_defense,
    draw_seed,
    eot_gradient,
    straight_through,
)
from reidbench.defenses.base import (
    DEFENSES,
    Defense,
    DefenseChain,
    DefenseEntry,
    create_defense,
    register_defense,
)

# Importing a defense module registers it.
from reidbench.defenses.bitdepth import BitDepthReduction
from reidbench.defenses.cs import CircuitousScaling
from reidbench.defenses.jpeg import JPEGCompression
from reidbench.defenses.median import MedianFilter
from reidbench.defenses.resize_pad import ResizePad

__all__ = [
    "DEFENSES",
    "BitDepthReduction",
    "CircuitousScaling",
    "Defended",
    "Defense",
    "DefenseChain",
    "DefenseEntry",
    "JPEGCompression",
    "MedianFilter",
    "ResizePad",
    "apply_defense",
    "create_defense",
    "draw_seed",
    "eot_gradient",
    "register_defense",
    "straight_through",
]
