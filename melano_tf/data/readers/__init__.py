"""Readers for the dermoscopy layouts a user has: each turns a folder into a :class:`Source`.

Formats (``detect_format`` tries them in this order):

- ``isic2017``: ``ISIC-2017_*_Part3_GroundTruth.csv`` (``image_id,melanoma,seborrheic_keratosis``,
  0/1; nevus = both 0) with images anywhere below; ``*_superpixels.png`` are skipped.
  group = image_id (2017 has no lesion id).
- ``ham10000``: ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,...``); dx mel/nv/bkl ->
  melanoma/nevus/seborrheic_keratosis, anything else -> other. group = lesion_id.
- ``isic_cli``: ``metadata.csv`` with ``isic_id`` and ``diagnosis*`` columns (``isic image
  download``). A diagnosis column mentioning Melanoma / Nevus / Seborrheic keratosis picks the
  class (in that priority), else other. group = lesion_id when present, else isic_id.
- ``isic2019``: ``ISIC_2019_Training_GroundTruth.csv`` (``image`` + one-hot MEL, NV, BCC, AK,
  BKL, DF, VASC, SCC, UNK); MEL/NV/BKL -> melanoma/nevus/seborrheic_keratosis, the rest -> other.
  group = ``lesion_id`` of ``ISIC_2019_Training_Metadata.csv`` (else the image id).
- ``isic2020``: ``train.csv`` or ``ISIC_2020_Training_GroundTruth*.csv`` (``image_name``,
  ``patient_id``, ``diagnosis``, ``benign_malignant``, ``target``); images as JPEG (``jpeg/train/``,
  ``train/``) or DICOM (JPEG preferred when both). diagnosis melanoma / nevus / seborrheic
  keratosis picks the class (target=1 is melanoma), else other. group = ``patient_id``.
- ``ph2``: ``PH2_dataset.txt`` (``||``-separated; clinical diagnosis 0/1/2 = common nevus /
  atypical nevus / melanoma -> nevus, nevus, melanoma), images
  ``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` (masks beside them ignored).
  group = image (one lesion per image).
- ``class_folders``: one subfolder per class. Folder names go through ``CLASS_ALIASES``
  (case-insensitive: ``MEL/``, ``Melanoma/``, ``mel/`` are all melanoma); names not in the table
  stay classes of their own; class_names = the sorted resulting names; group = stem. The
  folder name is kept as the record's diagnosis. Auto-detection refuses a single image subfolder
  that is not a known class name (e.g. an unrecognised download with CSVs beside one image
  folder): ``--data_format=class_folders`` reads it as one class.
- ``flat``: images directly in the folder; unlabeled, no classes.

Images: ``decode.IMAGE_EXTENSIONS`` (JPEG, PNG, BMP, TIFF, WebP) and DICOM (``.dcm``; needs
pydicom). Files or folders reached through a symlink that leaves the data folder are skipped
and reported (``outside_data_dir``) unless ``read_source(..., follow_outside_links=True)``.

Labels index into ``Source.class_names`` (``CLASSES`` for the three dermoscopy sources).
Problems a user should see (missing images, rejected ids, ...) go to ``Source.problems`` as
``(where, "<category>: detail")`` and end up in the cache's report.csv.

Here: :func:`read_source` and the reader registry. ``common``: :class:`Source`, class aliases, image
walking, CSV and id checks; ``detect``: :func:`detect_format`; ``isic``: the ISIC readers; ``other``:
PH2, HAM10000, class folders, flat.
"""

from __future__ import annotations

import os

from melano_tf.data import decode
from melano_tf.data.readers.common import CLASS_ALIASES, IMAGE_EXTENSIONS, Source, bad_id, canonical_class, check_dir
from melano_tf.data.readers.detect import FORMATS, detect_format
from melano_tf.data.readers.isic import read_isic2017, read_isic2019, read_isic2020, read_isic_cli
from melano_tf.data.readers.other import read_class_folders, read_flat, read_ham10000, read_ph2
from melano_tf.errors import UserError

__all__ = ["CLASS_ALIASES", "FORMATS", "IMAGE_EXTENSIONS", "Source", "bad_id", "canonical_class", "detect_format",
           "read_source"]
_bad_id = bad_id  # the name tests use

_READERS = {"isic2017": read_isic2017, "isic2019": read_isic2019, "isic2020": read_isic2020,
            "ham10000": read_ham10000, "isic_cli": read_isic_cli, "ph2": read_ph2,
            "class_folders": read_class_folders, "flat": read_flat}


def read_source(data_dir: str, data_format: str = "auto", classes=None,
                follow_outside_links: bool = False) -> Source:
    """Reads data_dir in data_format ("auto" detects it), keeping only ``classes`` when given.

    classes: class names (e.g. ["melanoma"]); labels keep their index into class_names.
    follow_outside_links: also read files reached through symlinks that leave data_dir (by
      default they are skipped and reported as ``outside_data_dir``).
    Raises UserError (one line naming the path) for a missing folder, a malformed CSV, an unknown
    class, a source without any image, or DICOM files without pydicom installed.
    """
    check_dir(data_dir)
    root = os.path.abspath(data_dir)
    if data_format in (None, "", "auto"):
        data_format = detect_format(root)
    if data_format not in _READERS:
        raise UserError(f"--data_format={data_format}: choose one of auto, {', '.join(FORMATS)}")
    source = _READERS[data_format](root, follow_outside_links)
    if not source.records:
        detail = f" ({len(source.problems)} problems, e.g. {source.problems[0][0]}: " \
                 f"{source.problems[0][1]})" if source.problems else ""
        raise UserError(f"{root}: no images found in {data_format} layout{detail}")
    dicoms = [r.path for r in source.records if r.path.lower().endswith(decode.DICOM_EXTENSIONS)]
    if dicoms and not decode.have_pydicom():
        raise UserError(f"{root}: {len(dicoms)} DICOM images (e.g. {dicoms[0]}) need pydicom: "
                        f"{decode.DICOM_HINT}")
    if classes:
        if isinstance(classes, str):
            classes = [c for c in classes.split(",") if c]
        unknown = [c for c in classes if c not in source.class_names]
        if unknown:
            valid = ", ".join(source.class_names) or "none (unlabeled images)"
            raise UserError(f"--classes: unknown class {', '.join(unknown)} for {root}; valid: {valid}")
        keep = {source.class_names.index(c) for c in classes}
        source.records = [r for r in source.records if r.label in keep]
        if not source.records:
            raise UserError(f"{root}: no images of class {', '.join(classes)}")
    return source
