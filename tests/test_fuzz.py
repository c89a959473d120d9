"""Bad input everywhere: property-based tests (hypothesis, derandomized so CI is reproducible) over
the image decoder, the CSV readers and the flag parser, plus a source scan for unsafe loading.

Contracts:
* ``decode.load_image_bytes``: a uint8 HxWx3 array or ``BadImage`` ("<category>: ..."), nothing else,
  quickly; a huge declared size is ``too_large`` without being decoded.
* ``readers.read_source``: a ``Source`` (problems listed) or a one-line ``UserError``; no file outside
  the data folder is opened and every record path is inside it, whatever the CSV says.
* flag parsing: a config, or a one-line error and exit code 2 (no traceback).
* models are loaded with Keras ``safe_mode``; nothing unpickles user data.
"""

from __future__ import annotations

import ast
import builtins
import collections
import contextlib
import copy
import csv
import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from absl import flags as absl_flags
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from melano_tf import cli
from melano_tf import config as cfg
from melano_tf import flags as mflags
from melano_tf.data import decode, readers
from melano_tf.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # corrupt EXIF: expected

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# CI: a fixed, derandomized sample. A deeper local hunt: MELANO_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py
DEEP = int(os.environ.get("MELANO_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=DEEP or 40, deadline=None, derandomize=not DEEP, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CATEGORIES = {"truncated", "not_an_image", "too_small", "too_large", "undecodable", "missing"}


@contextlib.contextmanager
def decoded_sizes():
    """Yields a list that receives the size of every image whose pixels PIL decodes in the block: the
    decoder's work, measured rather than timed (the shared CI cores make any time limit flaky)."""
    from PIL import ImageFile
    sizes, real_load = [], ImageFile.ImageFile.load

    def load(self):
        sizes.append(self.size)
        return real_load(self)

    ImageFile.ImageFile.load = load
    try:
        yield sizes
    finally:
        ImageFile.ImageFile.load = real_load


# ============================================================================ image decoder
def _encode(mode: str, fmt: str, size=(24, 16), **kw) -> bytes:
    rng = np.random.default_rng(len(mode) + len(fmt))
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (size[1], size[0]), dtype=np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


SEEDS = {
    "jpeg_rgb": _encode("RGB", "JPEG", quality=90),
    "jpeg_gray": _encode("L", "JPEG"),
    "jpeg_cmyk": _encode("CMYK", "JPEG"),
    "jpeg_progressive": _encode("RGB", "JPEG", progressive=True),
    "png_rgb": _encode("RGB", "PNG"),
    "png_rgba": _encode("RGBA", "PNG"),
    "png_palette": _encode("P", "PNG"),
    "png_16bit": _encode("I;16", "PNG"),
    "gif": _encode("P", "GIF"),
    "bmp": _encode("RGB", "BMP"),
    "tiff": _encode("RGB", "TIFF"),
    "webp": _encode("RGB", "WEBP"),
}
MAGICS = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBP",
          b"\x00\x00\x01\x00", b"P6\n", b"8BPS", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"", b"%PDF-1.4", b"<svg"]


def _check_decoded(data: bytes):
    """The decoder's whole contract for one input."""
    with decoded_sizes() as sizes:
        try:
            img = decode.load_image_bytes(data)
        except decode.BadImage as e:
            img = e
    assert all(w * h <= decode.MAX_PIXELS for w, h in sizes), sizes  # nothing too large is ever decoded
    if isinstance(img, decode.BadImage):
        assert img.category in CATEGORIES, str(img)
        assert "\n" not in str(img)
        assert img.category != "too_large" or not sizes, sizes  # judged from the header, never decoded
        return img.category
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8, type(img)
    assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= decode.MIN_SIDE, img.shape
    assert img.shape[0] * img.shape[1] <= decode.MAX_PIXELS
    return "ok"


def test_seed_images_decode():
    assert {name: _check_decoded(data) for name, data in SEEDS.items()} == {name: "ok" for name in SEEDS}


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_random_bytes_are_an_image_or_badimage(magic, tail):
    _check_decoded(magic + tail)


@st.composite
def mutated_images(draw):
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 8))):  # overwrite bytes, header region favoured
        limit = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 64)
        data[draw(st.integers(0, limit))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(data)))
        data[pos:pos] = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@FUZZ
@given(mutated_images())
def test_mutated_jpeg_png_and_others_are_an_image_or_badimage(data):
    _check_decoded(data)


def _png_header(width: int, height: int) -> bytes:
    """A well-formed PNG declaring width x height whose pixel data is one short row."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(SEEDS["jpeg_rgb"])
    i = data.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@FUZZ
@example(65535, 65535)
@example(200_000_000, 2)
@given(st.integers(1, 2 ** 31 - 1), st.integers(1, 2 ** 31 - 1))
def test_huge_declared_dimensions_are_too_large_and_never_decoded(width, height):
    if width * height <= decode.MAX_PIXELS and width * height > 4_000_000:
        height = decode.MAX_PIXELS // width + 1  # keep the test's own memory small: only "too large" sizes
    expected = "too_large" if width * height > decode.MAX_PIXELS else None
    got = _check_decoded(_png_header(width, height))
    if expected:
        assert got == "too_large"
    if width <= 65535 and height <= 65535:
        got = _check_decoded(_jpeg_with_size(width, height))
        if expected:
            assert got == "too_large"


# ============================================================================ CSV readers
TRAVERSAL = ["../secret", "../../secret", "/etc/passwd", os.path.join("..", "secret"), "..", ".", "C:\\secret",
             "C:secret", "ISIC_0000001/../../secret", "sub/ISIC_0000001", "\\\\server\\share\\x", "ISIC_0000001\x00",
             "~/secret", "%2e%2e%2fsecret", "ISIC_0000001\n", " ISIC_0000001 "]
VALID_IDS = [f"ISIC_000000{i}" for i in range(4)]
NUMBERS = ["0", "1", "0.0", "1.0", "0.5", "nan", "NaN", "inf", "-inf", "1e999", "-1", "", "abc", "1,0", "0x1", " 1 "]
LAYOUTS = {
    "isic2017": ("ISIC-2017_Training_Part3_GroundTruth.csv", ["image_id", "melanoma", "seborrheic_keratosis"]),
    "ham10000": ("HAM10000_metadata.csv", ["lesion_id", "image_id", "dx", "dx_type", "age"]),
    "isic_cli": ("metadata.csv", ["isic_id", "lesion_id", "diagnosis", "diagnosis_1"]),
}


NEWLINE_ID = {"isic2017": b'image_id,melanoma,seborrheic_keratosis\n"0\n0",1,0\n',
              "ham10000": b'lesion_id,image_id,dx,dx_type,age\nL1,"0\n0",mel,histo,50\n',
              "isic_cli": b'isic_id,lesion_id,diagnosis,diagnosis_1\n"0\n0",L1,Melanoma,x\n'}


@pytest.fixture(scope="module")
def csv_roots(tmp_path_factory):
    """One folder per layout with four real images, and a 'secret' image beside each folder."""
    base = tmp_path_factory.mktemp("csv_fuzz")
    roots = {}
    for fmt in LAYOUTS:
        root = base / fmt / "data"
        (root / "images").mkdir(parents=True)
        for i, name in enumerate(VALID_IDS):
            Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / "images" / f"{name}.jpg")
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(base / fmt / "secret.jpg")
        roots[fmt] = str(root)
    return roots


cell = st.one_of(st.sampled_from(VALID_IDS + TRAVERSAL + NUMBERS + ["mel", "nv", "bkl", "Melanoma", "nevus"]),
                 st.text(max_size=12))


@st.composite
def csv_files(draw, fmt):
    name, header = LAYOUTS[fmt]
    kind = draw(st.sampled_from(["good_header", "good_header", "shuffled", "missing_column", "random_header",
                                 "raw_bytes", "empty"]))
    if kind == "raw_bytes":
        return draw(st.binary(max_size=512))
    if kind == "empty":
        return b""
    cols = list(header)
    if kind == "shuffled":
        cols = draw(st.permutations(cols))
    elif kind == "missing_column":
        cols.pop(draw(st.integers(0, len(cols) - 1)))
    elif kind == "random_header":
        cols = draw(st.lists(st.text(max_size=8), min_size=1, max_size=5))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        n = len(cols) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        rows.append([draw(cell) for _ in range(max(n, 0))])
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline)
    w.writerow(cols)
    w.writerows(rows)
    text = buf.getvalue()
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-16-le", "cp1252"]))
    return text.encode(encoding, errors="replace")


def _inside(path: str, root: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, root]) == root


def _read_watching_opens(root: str, fmt: str):
    """read_source with every open() recorded; returns (Source or UserError, opened paths)."""
    opened, real_open = [], builtins.open

    def watching_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    builtins.open = watching_open
    try:
        try:
            return readers.read_source(root, fmt), opened
        except UserError as e:
            return e, opened
    finally:
        builtins.open = real_open


def _check_source(outcome, opened, root, fmt):
    assert all(_inside(p, root) for p in opened), [p for p in opened if not _inside(p, root)]
    # the work, whatever the CSV says: each file read at most twice (format detection, then the reader)
    assert max(collections.Counter(opened).values(), default=0) <= 2, opened
    if isinstance(outcome, UserError):
        assert str(outcome) and "\n" not in str(outcome), repr(str(outcome))
        return
    assert outcome.records, "read_source returns records or raises"
    for r in outcome.records:
        assert _inside(r.path, root) and os.path.isfile(r.path), r.path
        assert "secret" not in r.path
        assert 0 <= r.label < len(outcome.class_names)
    for where, reason in outcome.problems:
        assert isinstance(where, str) and reason.split(":", 1)[0].isidentifier(), (where, reason)


@pytest.mark.parametrize("fmt", sorted(LAYOUTS))
def test_malformed_csvs_give_a_source_or_one_line_usererror(csv_roots, fmt):
    root = csv_roots[fmt]
    path = os.path.join(root, LAYOUTS[fmt][0])

    @FUZZ
    @given(csv_files(fmt), st.sampled_from([fmt, "auto"]))
    @example(b'"0\n0"\n', fmt)  # found by a deep run: a line break inside a quoted header field
    @example(NEWLINE_ID[fmt], fmt)  # ... and inside an id
    @example("image_id,\u00e9\n".encode("latin-1"), fmt)
    @example("\ufeffimage_id\n".encode("utf-16"), fmt)
    def run(content, data_format):
        with open(path, "wb") as f:
            f.write(content)
        outcome, opened = _read_watching_opens(root, data_format)
        _check_source(outcome, opened, root, fmt)

    run()


@pytest.mark.parametrize("fmt", sorted(LAYOUTS))
def test_ids_that_point_outside_the_data_folder_are_rejected(csv_roots, fmt):
    root = csv_roots[fmt]
    name, header = LAYOUTS[fmt]
    values = {"image_id": None, "isic_id": None, "melanoma": "1", "seborrheic_keratosis": "0", "lesion_id": "L1",
              "dx": "mel", "dx_type": "histo", "age": "50", "diagnosis": "Melanoma", "diagnosis_1": "Malignant"}
    id_col = "isic_id" if fmt == "isic_cli" else "image_id"
    lines = [",".join(header)]
    for i, bad in enumerate([VALID_IDS[0]] + TRAVERSAL):
        row = dict(values, **{id_col: bad, "lesion_id": f"L{i}"})
        lines.append(",".join('"' + row[c].replace('"', '""') + '"' for c in header))
    with open(os.path.join(root, name), "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")
    outcome, opened = _read_watching_opens(root, fmt)
    _check_source(outcome, opened, root, fmt)
    assert not isinstance(outcome, UserError), outcome
    # " ISIC_0000001 " and "ISIC_0000001\n" are trimmed to a valid id; nothing else is a record
    assert sorted(r.image_id for r in outcome.records) == VALID_IDS[:2]
    escaping = [t for t in TRAVERSAL if any(s in t for s in ("/", "\\", "..", "\x00")) or t[1:2] == ":"]
    rejected = [w for w, reason in outcome.problems if reason.startswith("rejected_id")]
    assert len(rejected) == len(escaping), (rejected, escaping)


# ============================================================================ flag parser
@pytest.fixture(scope="module")
def train_flags():
    mflags.define_train_flags()
    return absl_flags.FLAGS


FLAG_NAMES = ["batch_size", "resolution", "scheme", "loss", "precision", "strategy", "train_steps",
              "g_learning_rate", "beta_1", "classes", "level_weights", "num_levels", "base_resolution",
              "checkpoint_every", "data_format", "crop", "conditional", "latent_dim", "ema_decay", "seed"]
flag_value = st.one_of(st.sampled_from(["", "0", "-1", "1", "3", "32", "33", "1e6", "nan", "inf", "-inf", "abc",
                                        "true", "false", "dcgan", "lapgan", "wgan", "float8", "a,b", "1,2,3",
                                        "melanoma", "2147483648", "1" * 40, "--", "=", "\x00", "é", "☃"]),
                       st.text(max_size=10))
argument = st.one_of(
    st.builds(lambda n, v: f"--{n}={v}", st.sampled_from(FLAG_NAMES), flag_value),
    st.builds(lambda n: f"--{n}", st.sampled_from(FLAG_NAMES)),
    st.builds(lambda n: f"--no{n}", st.sampled_from(FLAG_NAMES)),
    st.sampled_from(["--unknown_flag=1", "-x", "positional", "--", "--=", "---batch_size=4", "--model_dir"]),
    st.text(max_size=8),
)


@contextlib.contextmanager
def flag_registry(fresh):
    """absl's global FLAGS (what cli._parse uses) and melano_tf.flags.FLAGS point at ``fresh``."""
    old = (absl_flags.FLAGS, mflags.FLAGS)
    absl_flags.FLAGS = mflags.FLAGS = fresh
    try:
        yield
    finally:
        absl_flags.FLAGS, mflags.FLAGS = old


@FUZZ
@given(argv=st.lists(argument, max_size=6), with_model_dir=st.booleans())
def test_flag_parser_gives_a_config_or_one_line_exit_2(train_flags, argv, with_model_dir):
    """In process, on a fresh copy of the flag registry each time: no state leaks between examples."""
    fresh = copy.deepcopy(train_flags)
    argv = ["train_dcgan"] + (["--model_dir=/nonexistent/run"] if with_model_dir else []) + argv
    with flag_registry(fresh):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                cli._parse(argv)
                conf = mflags.train_config("dcgan")
            except SystemExit as e:
                assert e.code == 2, e.code
                lines = err.getvalue().splitlines()
                assert len(lines) == 1 and ": error: " in lines[0], err.getvalue()
                return
            except UserError as e:
                assert str(e) and "\n" not in str(e), repr(str(e))
                assert e.exit_code == 2
                return
    assert isinstance(conf, cfg.TrainConfig)
    conf.validate()


def _bad_argv_cases(tmp: str):
    run = f"--model_dir={tmp}/run"
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty, exist_ok=True)
    with open(os.path.join(empty, "notes.txt"), "w") as f:
        f.write("no images here\n")
    return [
        ("train_dcgan", ["--batch_size=abc", run]),
        ("train_dcgan", ["--resolution=33", run]),
        ("train_dcgan", ["--scheme=nope", run]),
        ("train_dcgan", ["--unknown_flag=1", run]),
        ("train_dcgan", ["positional", run]),
        ("train_dcgan", []),
        ("train_dcgan", [run, "--data_dir=/nonexistent/dir"]),
        ("train_dcgan", ["--flagfile=/nonexistent/flags.txt"]),
        ("train_dcgan", [run, "--scheme=lapgan"]),
        ("train_dcgan", [run, "--batch_size=0"]),
        ("train_lapgan", [run, "--level_weights=a,b"]),
        ("prepare_data", ["--resolution=abc"]),
        ("train_dcgan", [run, f"--data_dir={empty}", "--train_steps=1"]),  # fails inside the library (TF loaded)
    ]


def test_curated_bad_command_lines_exit_2_with_one_line(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    for prog, argv in _bad_argv_cases(str(tmp_path)):
        res = subprocess.run([sys.executable, os.path.join(ROOT, "bin", prog), *argv], capture_output=True,
                             text=True, cwd=str(tmp_path), env=env, timeout=120)
        ours = [ln for ln in res.stderr.splitlines() if ln.startswith(f"{prog}: error: ")]
        assert res.returncode == 2, (prog, argv, res.returncode, res.stderr[-2000:])
        assert "Traceback" not in res.stderr, (prog, argv, res.stderr[-3000:])
        assert len(ours) == 1, (prog, argv, res.stderr[-2000:])


# ============================================================================ unsafe loading
UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}


def unsafe_loading(source: str, filename: str = "<src>") -> list[str]:
    """Calls and imports that would deserialize code from a file."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any((n or "").split(".")[0] in UNPICKLERS for n in names):
                found.append(f"{filename}:{node.lineno}: imports an unpickler")
        if isinstance(node, ast.Attribute) and node.attr in ("enable_unsafe_deserialization", "read_pickle"):
            found.append(f"{filename}:{node.lineno}: {node.attr}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        kw = {k.arg: k.value for k in node.keywords}
        literal = lambda v: isinstance(v, ast.Constant) and v.value  # noqa: E731
        if name in ("load_model", "load_weights", "deserialize_keras_object") and "safe_mode" in kw \
                and not literal(kw["safe_mode"]):
            found.append(f"{filename}:{node.lineno}: {name}(safe_mode=...) not True")
        if "allow_pickle" in kw and not (isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False):
            found.append(f"{filename}:{node.lineno}: {name}(allow_pickle=...)")
        base = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if base in ("torch",) and name == "load" and not literal(kw.get("weights_only")):
            found.append(f"{filename}:{node.lineno}: torch.load without weights_only=True")
        if base == "yaml" and name in ("load", "unsafe_load", "full_load") and "SafeLoader" not in ast.dump(node):
            found.append(f"{filename}:{node.lineno}: yaml.{name} without SafeLoader")
    return found


def _project_sources():
    for top in ("melano_tf", "bin", "scripts", "bench"):
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            for f in files:
                path = os.path.join(dirpath, f)
                if f.endswith(".py") or (top == "bin" and "." not in f):
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        text = fh.read()
                    if f.endswith(".py") or text.startswith("#!") and "python" in text.splitlines()[0]:
                        yield os.path.relpath(path, ROOT), text


def test_scanner_catches_unsafe_loading():
    bad = """
import pickle
from joblib import load
import numpy as np, keras, torch, yaml
keras.models.load_model(p, safe_mode=False)
keras.saving.load_model(p, safe_mode=flag)
keras.config.enable_unsafe_deserialization()
np.load(p, allow_pickle=True)
torch.load(p)
yaml.load(s)
"""
    lines = sorted(int(hit.split(":")[1]) for hit in unsafe_loading(bad))
    assert lines == [2, 3, 5, 6, 7, 8, 9, 10], unsafe_loading(bad)
    good = "import numpy as np, keras\nkeras.models.load_model(p, compile=False)\nnp.load(p)\n" \
           "keras.models.load_model(p, safe_mode=True)\nnp.load(p, allow_pickle=False)\n"
    assert unsafe_loading(good) == []


def test_no_unsafe_deserialization_in_the_project():
    sources = list(_project_sources())
    assert any(p.startswith("melano_tf/") for p, _ in sources) and any(p.startswith("bin/") for p, _ in sources)
    problems = [hit for path, text in sources for hit in unsafe_loading(text, path)]
    assert problems == []


def test_keras_model_files_load_in_safe_mode(tmp_path):
    """A .keras file with a Lambda layer (arbitrary code) is refused by the classifier-features loader."""
    features = pytest.importorskip("melano_tf.metrics.features")
    import keras
    marker = tmp_path / "code_ran"
    marker_path = str(marker)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: (open(marker_path, "w").close(), t)[1])(inputs)  # noqa: SIM115
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    path = str(tmp_path / "evil.keras")
    model.save(path)
    marker.unlink(missing_ok=True)
    with pytest.raises(Exception) as info:
        features.classifier(path)
    assert "safe_mode" in str(info.value) or "Lambda" in str(info.value), info.value
    assert not marker.exists()
