"""The record every reader produces, and the canonical lesion classes."""

from __future__ import annotations

import dataclasses

#: Canonical diagnosis classes for dermoscopy sources (ISIC 2017/2019/2020, HAM10000, isic-cli, PH2).
#: Index = integer label. A folder-per-class source uses its own sorted subfolder names.
CLASSES = ("nevus", "melanoma", "seborrheic_keratosis", "other")

#: Label of an unlabeled image (flat folder).
UNLABELED = -1


@dataclasses.dataclass(frozen=True)
class Record:
    """One image of a source.

    path: absolute path of the image file.
    label: index into the source's ``class_names`` (``UNLABELED`` when unknown).
    group: lesion or patient id where the source has one, else the image id; splits never
      put one group on two sides.
    image_id: the id the source uses for the image (file stem for folders).
    diagnosis: the source's own diagnosis or class-folder name, before mapping to the label
      (kept in the cache's examples and manifest); "" where the source has none.
    """

    path: str
    label: int
    group: str
    image_id: str
    diagnosis: str = ""
