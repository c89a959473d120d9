"""Readers: each layout on a tiny fixture written here, detection, filters, bad CSVs."""

import os

import numpy as np
import pytest
from PIL import Image

from melano_tf.data import readers
from melano_tf.data.records import CLASSES, UNLABELED
from melano_tf.errors import UserError


def _img(path, size=(20, 16), value=0, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    a = np.full((size[1], size[0], 3), value, np.uint8)
    Image.fromarray(a).save(path, format=fmt)
    return path


def _write(path, text, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as f:
        f.write(text)


@pytest.fixture
def isic2017(tmp_path):
    d = tmp_path / "isic"
    imgs = d / "ISIC-2017_Training_Data"
    for i in range(4):
        _img(str(imgs / f"ISIC_000000{i}.jpg"), value=40 * i)
    _img(str(imgs / "ISIC_0000000_superpixels.png"))
    _img(str(tmp_path / "secret.jpg"))  # what a '../secret' id would point at
    rows = ["image_id,melanoma,seborrheic_keratosis", "ISIC_0000000,0.0,0.0", "ISIC_0000001,1.0,0.0",
            "ISIC_0000002,0.0,1.0", "ISIC_0000003,0.0,0.0", "ISIC_0000009,1.0,0.0", "../secret,0,0"]
    # BOM and CRLF, as Windows tools write them
    _write(d / "ISIC-2017_Training_Part3_GroundTruth.csv", "\ufeff" + "\r\n".join(rows) + "\r\n")
    return str(d)


def test_isic2017(isic2017):
    assert readers.detect_format(isic2017) == "isic2017"
    src = readers.read_source(isic2017)
    assert src.format == "isic2017" and src.class_names == CLASSES
    by_id = {r.image_id: r for r in src.records}
    assert sorted(by_id) == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002", "ISIC_0000003"]
    assert [by_id[f"ISIC_000000{i}"].label for i in range(4)] == [
        CLASSES.index("nevus"), CLASSES.index("melanoma"), CLASSES.index("seborrheic_keratosis"),
        CLASSES.index("nevus")]
    assert all(r.group == r.image_id for r in src.records)
    assert all(os.path.isabs(r.path) and os.path.isfile(r.path) for r in src.records)
    assert not any("superpixels" in r.path for r in src.records)
    assert not any("superpixels" in where for where, _ in src.problems)
    reasons = {reason.split(":")[0]: where for where, reason in src.problems}
    assert "ISIC_0000009" in reasons["missing"] and "row 6" in reasons["missing"]
    assert "../secret" in reasons["rejected_id"] and "row 7" in reasons["rejected_id"]
    assert not any("secret" in r.path for r in src.records)


def test_ham10000_groups_by_lesion(tmp_path):
    d = tmp_path / "ham"
    _img(str(d / "HAM10000_images_part_1" / "ISIC_1.jpg"))
    _img(str(d / "HAM10000_images_part_1" / "ISIC_2.jpg"))
    _img(str(d / "HAM10000_images_part_2" / "ISIC_3.jpg"))
    _img(str(d / "HAM10000_images_part_2" / "ISIC_4.jpg"))
    _write(d / "HAM10000_metadata.csv",
           "lesion_id,image_id,dx,dx_type,age,sex,localization\n"
           "HAM_A,ISIC_1,mel,histo,50,male,back\nHAM_A,ISIC_3,mel,histo,50,male,back\n"
           "HAM_B,ISIC_2,nv,follow_up,30,female,face\nHAM_C,ISIC_4,bcc,histo,70,male,trunk\n"
           "HAM_D,ISIC_5,bkl,histo,60,male,trunk\n")
    assert readers.detect_format(str(d)) == "ham10000"
    src = readers.read_source(str(d))
    by_id = {r.image_id: r for r in src.records}
    assert by_id["ISIC_1"].group == by_id["ISIC_3"].group == "HAM_A"
    assert by_id["ISIC_2"].group == "HAM_B"
    assert by_id["ISIC_1"].label == CLASSES.index("melanoma")
    assert by_id["ISIC_2"].label == CLASSES.index("nevus")
    assert by_id["ISIC_4"].label == CLASSES.index("other")
    assert "part_2" in by_id["ISIC_3"].path
    assert [reason.split(":")[0] for _, reason in src.problems] == ["missing"]


def test_isic_cli(tmp_path):
    d = tmp_path / "cli"
    for i in range(4):
        _img(str(d / f"ISIC_{i}.jpg"))
    _write(d / "metadata.csv",
           "isic_id,attribution,copyright_license,diagnosis_1,diagnosis_2,diagnosis_3,lesion_id\n"
           'ISIC_0,Anon,CC-BY,Malignant,"Malignant melanocytic proliferations (Melanoma)",Melanoma Invasive,IL_1\n'
           "ISIC_1,Anon,CC-BY,Benign,Benign melanocytic proliferations,Nevus,IL_1\n"
           "ISIC_2,Anon,CC-BY,Benign,Benign epidermal proliferations,Seborrheic keratosis,\n"
           "ISIC_3,Anon,CC-BY,Malignant,Malignant adnexal epithelial proliferations,Basal cell carcinoma,IL_3\n")
    assert readers.detect_format(str(d)) == "isic_cli"
    src = readers.read_source(str(d))
    by_id = {r.image_id: r for r in src.records}
    assert [CLASSES[by_id[f"ISIC_{i}"].label] for i in range(4)] == [
        "melanoma", "nevus", "seborrheic_keratosis", "other"]
    assert by_id["ISIC_0"].group == by_id["ISIC_1"].group == "IL_1"
    assert by_id["ISIC_2"].group == "ISIC_2"  # empty lesion_id -> own id


def test_class_folders(tmp_path):
    d = tmp_path / "folders"
    _img(str(d / "nevus" / "a.png"), fmt="PNG")
    _img(str(d / "nevus" / "b.jpg"))
    _img(str(d / "melanoma" / "c.jpg"))
    os.makedirs(d / "empty")
    assert readers.detect_format(str(d)) == "class_folders"
    src = readers.read_source(str(d))
    assert src.class_names == ("melanoma", "nevus")
    assert sorted((r.image_id, src.class_names[r.label]) for r in src.records) == [
        ("a", "nevus"), ("b", "nevus"), ("c", "melanoma")]
    assert all(r.group == r.image_id for r in src.records)


def test_flat(tmp_path):
    d = tmp_path / "flat"
    _img(str(d / "x.jpg"))
    _img(str(d / "y.png"), fmt="PNG")
    _write(d / "notes.txt", "not an image")
    assert readers.detect_format(str(d)) == "flat"
    src = readers.read_source(str(d))
    assert src.class_names == () and [r.image_id for r in src.records] == ["x", "y"]
    assert all(r.label == UNLABELED for r in src.records)
    with pytest.raises(UserError, match="unknown class melanoma"):
        readers.read_source(str(d), classes=["melanoma"])


def test_format_override(isic2017):
    src = readers.read_source(isic2017, data_format="class_folders")
    assert src.format == "class_folders" and src.class_names == ("ISIC-2017_Training_Data",)
    with pytest.raises(UserError, match="data_format=nope"):
        readers.read_source(isic2017, data_format="nope")


def test_class_filter(isic2017):
    src = readers.read_source(isic2017, classes=["melanoma"])
    assert [r.image_id for r in src.records] == ["ISIC_0000001"]
    assert src.records[0].label == CLASSES.index("melanoma")  # index kept, not renumbered
    src = readers.read_source(isic2017, classes=["nevus", "seborrheic_keratosis"])
    assert len(src.records) == 3
    with pytest.raises(UserError) as e:
        readers.read_source(isic2017, classes=["melanomma"])
    assert "melanomma" in str(e.value) and "seborrheic_keratosis" in str(e.value)


@pytest.mark.parametrize("body, match", [
    ("image_id,melanoma\nISIC_0000000,0\n", r"row 1: missing column\(s\) seborrheic_keratosis"),
    ("image_id,melanoma,seborrheic_keratosis\nISIC_0000000,0,0\nISIC_0000001,yes,0\n",
     r"row 3: melanoma='yes' is not a number"),
    ("image_id,melanoma,seborrheic_keratosis\nISIC_0000000,0\n", r"row 2: 2 fields"),
])
def test_bad_csv_names_file_and_row(isic2017, body, match):
    path = os.path.join(isic2017, "ISIC-2017_Training_Part3_GroundTruth.csv")
    _write(path, body)
    with pytest.raises(UserError, match=match) as e:
        readers.read_source(isic2017)
    assert "ISIC-2017_Training_Part3_GroundTruth.csv" in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_empty_dirs(tmp_path):
    with pytest.raises(UserError, match="nowhere: no such directory"):
        readers.read_source(str(tmp_path / "nowhere"))
    os.makedirs(tmp_path / "empty" / "sub")
    with pytest.raises(UserError, match="no images found"):
        readers.read_source(str(tmp_path / "empty"))


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "/etc/passwd", "..", ""])
def test_bad_ids(bad):
    assert readers._bad_id(bad) is not None
    assert readers._bad_id("ISIC_0000001") is None
