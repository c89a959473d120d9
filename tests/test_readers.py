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


def _read_layout(path, fmt):
    """Detects ``fmt`` at ``path`` and reads it as that format: (source, {image_id: record})."""
    assert readers.detect_format(str(path)) == fmt
    src = readers.read_source(str(path))
    assert src.format == fmt
    return src, {r.image_id: r for r in src.records}


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
    src, by_id = _read_layout(isic2017, "isic2017")
    assert src.class_names == CLASSES
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
    src, by_id = _read_layout(d, "ham10000")
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
    src, by_id = _read_layout(d, "isic_cli")
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


# ---------------------------------------------------------------- ISIC 2019 / 2020, PH2 (issue 13)

def _split_never_crosses_groups(src, seed=0):
    from melano_tf.data.splits import split_records
    side = {}
    for split, recs in split_records(src.records, seed, (0.5, 0.25, 0.25)).items():
        for r in recs:
            assert side.setdefault(r.group, split) == split, r.group


DX2019 = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")


@pytest.fixture
def isic2019(tmp_path):
    d = tmp_path / "isic2019"
    rows, meta = ["image," + ",".join(DX2019)], ["image,age_approx,anatom_site_general,lesion_id,sex"]
    for i in range(12):
        image_id = f"ISIC_{i:07d}" + ("_downsampled" if i == 11 else "")
        _img(str(d / "ISIC_2019_Training_Input" / f"{image_id}.jpg"), value=10 * i)
        onehot = ["1.0" if j == i % 9 else "0.0" for j in range(9)]
        rows.append(image_id + "," + ",".join(onehot))
        lesion = f"BCN_{i // 3:07d}" if i < 9 else ""   # three images per lesion; the rest none
        meta.append(f"{image_id},55,anterior torso,{lesion},female")
    rows.append("ISIC_0000099," + ",".join(["0.0"] * 9))    # no diagnosis and no image
    _write(d / "ISIC_2019_Training_GroundTruth.csv", "\n".join(rows) + "\n")
    _write(d / "ISIC_2019_Training_Metadata.csv", "\n".join(meta) + "\n")
    _write(d / "ISIC_2019_Training_Input" / "LICENSE.txt", "CC-BY-NC")
    return str(d)


def test_isic2019(isic2019):
    src, by_id = _read_layout(isic2019, "isic2019")
    assert src.class_names == CLASSES
    assert len(by_id) == 12
    want = {"MEL": "melanoma", "NV": "nevus", "BKL": "seborrheic_keratosis", "BCC": "other", "AK": "other",
            "DF": "other", "VASC": "other", "SCC": "other", "UNK": "other"}
    for i in range(12):
        r = by_id[f"ISIC_{i:07d}" + ("_downsampled" if i == 11 else "")]
        assert r.diagnosis == DX2019[i % 9] and CLASSES[r.label] == want[r.diagnosis]
        assert r.group == (f"BCN_{i // 3:07d}" if i < 9 else r.image_id)
    assert any("ISIC_0000099" in where and "missing" in why for where, why in src.problems)
    _split_never_crosses_groups(src)


@pytest.fixture
def isic2020(tmp_path):
    try:
        import pydicom  # noqa: F401
        from test_decode import _dicom  # same folder; pytest puts tests/ on sys.path
    except ImportError:  # the reader never decodes: a DICOM preamble is enough
        def _dicom(path, a, photometric):
            with open(path, "wb") as f:
                f.write(b"\0" * 128 + b"DICM" + a.tobytes())
    d = tmp_path / "isic2020"
    rows = ["image_name,patient_id,lesion_id,sex,age_approx,anatom_site_general_challenge,diagnosis,"
            "benign_malignant,target"]
    dx = [("melanoma", "malignant", 1), ("nevus", "benign", 0), ("seborrheic keratosis", "benign", 0),
          ("unknown", "benign", 0), ("lentigo NOS", "benign", 0)]
    for i in range(10):
        image_id = f"ISIC_{i:07d}"
        text, bm, target = dx[i % 5]
        rows.append(f"{image_id},IP_{i // 4:07d},IL_{i:07d},male,45,torso,{text},{bm},{target}")
        a = np.full((16, 20, 3), 20 * i, np.uint8)
        os.makedirs(d / "train", exist_ok=True)
        _dicom(d / "train" / f"{image_id}.dcm", a, "RGB")
        if i < 8:  # the Kaggle layout has every image twice: jpeg/train/X.jpg and train/X.dcm
            _img(str(d / "jpeg" / "train" / f"{image_id}.jpg"), value=20 * i)
    _img(str(d / "jpeg" / "test" / "ISIC_9999999.jpg"))   # test images: not in train.csv
    _write(d / "train.csv", "\n".join(rows) + "\n")
    _write(d / "test.csv", "image_name,patient_id\nISIC_9999999,IP_9\n")
    return str(d)


def test_isic2020_jpeg_preferred_dicom_otherwise(isic2020, monkeypatch):
    from melano_tf.data import decode
    monkeypatch.setattr(decode, "have_pydicom", lambda: True)   # reading the layout needs no decoder
    assert readers.detect_format(isic2020) == "isic2020"
    src = readers.read_source(isic2020)
    by_id = {r.image_id: r for r in src.records}
    assert len(by_id) == 10
    assert by_id["ISIC_0000000"].path.endswith(os.path.join("jpeg", "train", "ISIC_0000000.jpg"))
    assert by_id["ISIC_0000009"].path.endswith(os.path.join("train", "ISIC_0000009.dcm"))
    assert [CLASSES[by_id[f"ISIC_{i:07d}"].label] for i in range(5)] == [
        "melanoma", "nevus", "seborrheic_keratosis", "other", "other"]
    assert by_id["ISIC_0000004"].diagnosis == "lentigo NOS"
    assert by_id["ISIC_0000005"].group == by_id["ISIC_0000007"].group == "IP_0000001"   # patient
    assert not [p for p in src.problems if "duplicate" in p[1]]   # jpg + dcm of one id is no duplicate
    _split_never_crosses_groups(src)


def test_isic2020_dicom_without_pydicom_is_one_line(isic2020, monkeypatch):
    from melano_tf.data import decode
    monkeypatch.setattr(decode, "have_pydicom", lambda: False)
    with pytest.raises(UserError, match=r"2 DICOM images .*melano_tf\[dicom\]"):
        readers.read_source(isic2020)


def _ph2_txt(rows):
    head = ("||   Name   || Histological Diagnosis || Clinical Diagnosis || Asymmetry || Pigment Network || "
            "Dots/Globules || Streaks || Regression Areas || Blue-Whitish Veil || Colors ||")
    lines = [head] + [f"||  {n}  ||  {h:<20}  ||  {c}  ||  0  ||  T  ||  A  ||  A  ||  A  ||  A  ||  3 4  ||"
                      for n, h, c in rows]
    return "\n".join(lines) + ("\n\n\nLegends:\n\nClinical Diagnosis:\n\t0 - Common Nevus;\n\t1 - Atypical Nevus;"
                               "\n\t2 - Melanoma.\n")


@pytest.fixture
def ph2(tmp_path):
    d = tmp_path / "PH2Dataset"
    rows = [("IMD002", "", 0), ("IMD003", "", 0), ("IMD009", "", 1), ("IMD058", "", 1), ("IMD061", "Melanoma", 2),
            ("IMD063", "Melanoma", 2), ("IMD999", "", 0)]
    for name, _, _ in rows[:-1]:
        case = d / "PH2 Dataset images" / name
        _img(str(case / f"{name}_Dermoscopic_Image" / f"{name}.bmp"), value=50, fmt="BMP")
        _img(str(case / f"{name}_lesion" / f"{name}_lesion.bmp"), value=255, fmt="BMP")
        _img(str(case / f"{name}_roi" / f"{name}_R1_Label4.bmp"), value=255, fmt="BMP")
    _write(d / "PH2_dataset.txt", _ph2_txt(rows))
    _write(d / "PH2_dataset.xlsx", "binary")
    return str(d)


def test_ph2(ph2):
    src, by_id = _read_layout(ph2, "ph2")
    assert sorted(by_id) == ["IMD002", "IMD003", "IMD009", "IMD058", "IMD061", "IMD063"]  # masks not read
    assert {i: (CLASSES[r.label], r.diagnosis) for i, r in by_id.items()} == {
        "IMD002": ("nevus", "common nevus"), "IMD003": ("nevus", "common nevus"),
        "IMD009": ("nevus", "atypical nevus"), "IMD058": ("nevus", "atypical nevus"),
        "IMD061": ("melanoma", "melanoma"), "IMD063": ("melanoma", "melanoma")}
    assert all(r.group == r.image_id and r.path.endswith(".bmp") for r in src.records)
    assert any("IMD999" in where and "missing" in why for where, why in src.problems)
    _split_never_crosses_groups(src)
    # one folder up (the zip's top folder) is detected too
    assert readers.detect_format(os.path.dirname(ph2)) == "ph2"


def test_ph2_xlsx_only_says_what_is_missing(ph2):
    os.remove(os.path.join(ph2, "PH2_dataset.txt"))
    with pytest.raises(UserError, match="PH2_dataset.txt"):
        readers.detect_format(ph2)


def test_class_folder_names_map_to_canonical_classes(tmp_path):
    d = tmp_path / "folders"
    for folder in ("MEL", "Melanoma", "mel", "NV", "seborrheic-keratosis", "BCC", "Benign"):
        _img(str(d / folder / f"{folder}_1.bmp"), fmt="BMP")
    src = readers.read_source(str(d))
    assert src.class_names == ("Benign", "melanoma", "nevus", "other", "seborrheic_keratosis")
    got = sorted((r.diagnosis, src.class_names[r.label]) for r in src.records)
    assert got == [("BCC", "other"), ("Benign", "Benign"), ("MEL", "melanoma"), ("Melanoma", "melanoma"),
                   ("NV", "nevus"), ("mel", "melanoma"), ("seborrheic-keratosis", "seborrheic_keratosis")]
    assert readers.canonical_class("Malignant_Melanoma") == "melanoma"
    assert readers.canonical_class("cats") is None


def test_single_unknown_image_subfolder_is_not_one_class(isic2019):
    os.remove(os.path.join(isic2019, "ISIC_2019_Training_GroundTruth.csv"))  # an unrecognised download
    with pytest.raises(UserError) as e:
        readers.detect_format(isic2019)
    msg = str(e.value)
    assert "'ISIC_2019_Training_Input'" in msg and "ISIC 2019" in msg and "--data_format=class_folders" in msg
    assert "\n" not in msg
    src = readers.read_source(isic2019, data_format="class_folders")   # explicit: allowed
    assert src.class_names == ("ISIC_2019_Training_Input",)


def test_single_known_class_folder_is_fine(tmp_path):
    _img(str(tmp_path / "d" / "melanoma" / "a.webp"), fmt="WEBP")
    src = readers.read_source(str(tmp_path / "d"))
    assert src.format == "class_folders" and src.class_names == ("melanoma",)


def test_new_extensions_are_found(tmp_path):
    d = tmp_path / "flat"
    for ext, fmt in (("bmp", "BMP"), ("tif", "TIFF"), ("TIFF", "TIFF"), ("webp", "WEBP"), ("png", "PNG")):
        _img(str(d / f"x_{ext}.{ext}"), fmt=fmt)
    assert readers.detect_format(str(d)) == "flat"
    assert len(readers.read_source(str(d)).records) == 5


def test_symlinks_leaving_data_dir_are_skipped_and_reported(tmp_path):
    outside = tmp_path / "outside"
    _img(str(outside / "secret.jpg"))
    _img(str(outside / "dir" / "s2.jpg"))
    d = tmp_path / "data"
    _img(str(d / "nevus" / "a.jpg"))
    _img(str(d / "nevus" / "b.jpg"))
    os.symlink(outside / "secret.jpg", d / "nevus" / "link.jpg")
    os.symlink(outside / "dir", d / "nevus" / "linkdir")
    os.symlink(d / "nevus" / "a.jpg", d / "nevus" / "inside.jpg")   # stays inside: kept
    os.symlink(outside, d / "melanoma")                               # a class folder outside
    src = readers.read_source(str(d))
    assert sorted(r.image_id for r in src.records) == ["a", "b", "inside"]
    assert src.class_names == ("nevus",)
    reported = sorted(os.path.basename(w) for w, why in src.problems if why.startswith("outside_data_dir"))
    assert reported == ["link.jpg", "linkdir", "melanoma"]
    # flat and CSV layouts too
    _img(str(tmp_path / "flat" / "a.png"), fmt="PNG")
    os.symlink(outside / "secret.jpg", tmp_path / "flat" / "s.jpg")
    src = readers.read_source(str(tmp_path / "flat"))
    assert [r.image_id for r in src.records] == ["a"] and src.problems[0][1].startswith("outside_data_dir")
    both = readers.read_source(str(tmp_path / "flat"), follow_outside_links=True)
    assert sorted(r.image_id for r in both.records) == ["a", "s"]
