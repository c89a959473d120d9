"""Phantom classes, colours and per-class parameter ranges (RGB in [0, 1]).

Class statistics follow the ABCD rule with overlapping ranges; labels index
:data:`melano_tf.data.records.CLASSES`.
"""

from __future__ import annotations

import numpy as np

from melano_tf.data.records import CLASSES

CLASS_NAMES = ("nevus", "melanoma", "seborrheic_keratosis")
assert CLASS_NAMES == tuple(CLASSES[:3])
NEVUS, MELANOMA, SK = 0, 1, 2

#: ISIC 2017 training-set class counts.
ISIC2017_MIX = {"melanoma": 374, "seborrheic_keratosis": 254, "nevus": 1372}

# Colours, RGB in [0, 1].
SKIN = np.array([[0.94, 0.78, 0.73], [0.91, 0.73, 0.64], [0.89, 0.68, 0.64],
                 [0.82, 0.62, 0.52], [0.72, 0.52, 0.43]], np.float32)
# Pigment ramp: density 0 is the skin colour, 1 is black.
RAMP_POS = np.array([0.0, 0.18, 0.4, 0.62, 0.82, 1.0], np.float32)
RAMP = np.array([[0.80, 0.61, 0.51], [0.66, 0.45, 0.36], [0.50, 0.31, 0.24],
                 [0.33, 0.20, 0.16], [0.16, 0.11, 0.11]], np.float32)
VEIL = np.array([0.66, 0.70, 0.80], np.float32)
BLUE_GREY = np.array([0.47, 0.49, 0.58], np.float32)
RED = np.array([0.80, 0.40, 0.42], np.float32)
SCAR = np.array([0.92, 0.86, 0.86], np.float32)
MILIA = np.array([0.97, 0.94, 0.80], np.float32)

# Per-class tint of the pigment ramp: SK yellower tan, melanoma slightly cooler.
HUE = {NEVUS: np.float32([1, 1, 1]), MELANOMA: np.float32([0.98, 0.99, 1.03]), SK: np.float32([1.02, 1.02, 0.96])}

# Per-class ranges (nevus, melanoma, seborrheic keratosis); they overlap on purpose.
CLASS_RANGES = {
    NEVUS: dict(radius=(0.28, 0.62), aspect=(0.78, 1.0), centre=0.06, harm=(0.015, 0.05), harm_k=5,
                harm_decay=1.4, bnoise=(0.01, 0.04), bcells=(4, 7), edge=(0.05, 0.15),
                lobes=([0, 1], [0.9, 0.1]), base=(0.36, 0.76), centre_delta=(-0.1, 0.2),
                asym=(0.0, 0.05), blotch=(0.02, 0.07), fade=(0.15, 0.5)),
    MELANOMA: dict(radius=(0.48, 1.0), aspect=(0.6, 1.0), centre=0.12, harm=(0.04, 0.12), harm_k=14,
                   harm_decay=0.75, bnoise=(0.04, 0.11), bcells=(8, 16), edge=(0.015, 0.12),
                   lobes=([0, 1, 2, 3], [0.15, 0.35, 0.35, 0.15]), base=(0.45, 0.85),
                   centre_delta=(-0.15, 0.3), asym=(0.05, 0.3), blotch=(0.1, 0.26), fade=(0.03, 0.35)),
    SK: dict(radius=(0.34, 0.76), aspect=(0.65, 1.0), centre=0.09, harm=(0.03, 0.08), harm_k=9,
             harm_decay=1.0, bnoise=(0.02, 0.06), bcells=(8, 14), edge=(0.006, 0.03),
             lobes=([0, 1], [0.7, 0.3]), base=(0.1, 0.4), centre_delta=(-0.05, 0.12),
             asym=(0.0, 0.1), blotch=(0.03, 0.09), fade=(0.02, 0.1)),
}


