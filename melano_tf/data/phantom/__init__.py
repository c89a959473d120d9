"""Phantoms: procedural dermoscopy-like images with no patient in them.

A phantom is skin (tone, low-frequency texture, fine noise) with an irregular pigmented lesion
(pigment network, dots and globules), optional hairs and dermoscope vignette, slightly blurred.
Class statistics follow the ABCD rule with overlapping ranges:

- nevus: smaller, symmetric, regular border, one or two browns, regular network;
- melanoma: larger, asymmetric lobes, irregular border, many colours (dark brown, black,
  blue-grey, blue-white veil, red), atypical network, irregular dots;
- seborrheic keratosis: lighter tan/brown, sharp border, waxy cerebriform texture,
  milia-like cysts.

Modules: ``palette`` (classes, colours, per-class ranges), ``texture`` (noise, network, skin),
``lesion`` (shape, pigment, dots, class colours), ``artefacts`` (hair, illumination, vignette,
blur, sensor noise), ``compose`` (:func:`render`), ``writer`` (ISIC 2017 layout).
"""

from melano_tf.data.phantom.compose import render
from melano_tf.data.phantom.palette import CLASS_NAMES, ISIC2017_MIX, MELANOMA, NEVUS, SK
from melano_tf.data.phantom.writer import (GROUND_TRUTH_CSV, IMAGES_DIR, META_JSON, VERSION, default_class_counts,
                                           image_seed, plan, write_isic_layout)

__all__ = ["render", "CLASS_NAMES", "ISIC2017_MIX", "MELANOMA", "NEVUS", "SK", "GROUND_TRUTH_CSV", "IMAGES_DIR",
           "META_JSON", "VERSION", "default_class_counts", "image_seed", "plan", "write_isic_layout"]
