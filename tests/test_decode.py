"""The bad-input corpus and its documented outcome; crops and antialiased resize."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from melano_tf.data import decode
from melano_tf.data.decode import BadImage


def _jpeg(a, **kw):
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="JPEG", quality=95, **kw)
    return b.getvalue()


def _save(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _png16_rgb(a16):
    """A 48-bit RGB PNG written by hand (PIL cannot write one)."""
    h, w, _ = a16.shape
    raw = b"".join(b"\x00" + a16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _noise(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_jpeg(tmp_path):
    out = decode.load_image(_save(tmp_path, "a.jpg", _jpeg(np.full((30, 40, 3), 200, np.uint8))))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    assert abs(int(out.mean()) - 200) <= 2


def test_truncated_jpeg(tmp_path):
    data = _jpeg(_noise())
    with pytest.raises(BadImage) as e:
        decode.load_image(_save(tmp_path, "t.jpg", data[: len(data) // 2]))
    assert e.value.category == "truncated"


def test_text_named_jpg(tmp_path):
    with pytest.raises(BadImage) as e:
        decode.load_image(_save(tmp_path, "notes.jpg", b"patient notes, not an image\n" * 10))
    assert e.value.category == "not_an_image"


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (24, 16), (255, 0, 0, 0))  # pure cyan
    b = io.BytesIO()
    cmyk.save(b, format="JPEG", quality=95)
    out = decode.load_image(_save(tmp_path, "cmyk.jpg", b.getvalue()))
    assert out.shape == (16, 24, 3)
    r, g, bl = out.reshape(-1, 3).mean(0)
    assert r < 30 and g > 225 and bl > 225


def test_16bit_grayscale_png(tmp_path):
    a = np.tile(np.array([0, 257 * 128, 65535], np.uint16), (12, 4))
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG")
    out = decode.load_image(_save(tmp_path, "g16.png", b.getvalue()))
    assert out.shape == (12, 12, 3)
    assert out[0, :3, 0].tolist() == [0, 128, 255]
    assert (out[..., 0] == out[..., 2]).all()


def test_16bit_rgb_png(tmp_path):
    a = np.zeros((10, 10, 3), np.uint16)
    a[..., 0], a[..., 1], a[..., 2] = 65535, 257 * 100, 0
    out = decode.load_image(_save(tmp_path, "rgb16.png", _png16_rgb(a)))
    assert out.shape == (10, 10, 3) and out[0, 0].tolist() == [255, 100, 0]


def test_rgba_composited_on_black(tmp_path):
    a = np.zeros((10, 12, 4), np.uint8)
    a[..., :3] = 200
    a[:, :4, 3], a[:, 4:8, 3], a[:, 8:, 3] = 0, 255, 128
    b = io.BytesIO()
    Image.fromarray(a, "RGBA").save(b, format="PNG")
    out = decode.load_image(_save(tmp_path, "rgba.png", b.getvalue()))
    assert out.shape == (10, 12, 3)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 5].tolist() == [200, 200, 200]
    assert out[0, 9].tolist() == [100, 100, 100]


def test_grayscale(tmp_path):
    b = io.BytesIO()
    Image.fromarray(np.full((9, 11), 77, np.uint8), "L").save(b, format="PNG")
    out = decode.load_image(_save(tmp_path, "g.png", b.getvalue()))
    assert out.shape == (9, 11, 3) and (out == 77).all()


def test_palette_and_palette_transparency(tmp_path):
    im = Image.new("P", (10, 10), 1)
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    b = io.BytesIO()
    im.save(b, format="PNG")
    assert decode.load_image(_save(tmp_path, "p.png", b.getvalue()))[0, 0].tolist() == [10, 200, 30]
    b = io.BytesIO()
    im.save(b, format="PNG", transparency=1)
    assert decode.load_image(_save(tmp_path, "pt.png", b.getvalue()))[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("size", [(1, 1), (7, 100)])
def test_too_small(tmp_path, size):
    b = io.BytesIO()
    Image.new("RGB", size, (9, 9, 9)).save(b, format="PNG")
    with pytest.raises(BadImage) as e:
        decode.load_image(_save(tmp_path, "tiny.png", b.getvalue()))
    assert e.value.category == "too_small"


def test_decompression_bomb_not_decoded(tmp_path, monkeypatch):
    path = _save(tmp_path, "big.jpg", _jpeg(_noise(40, 40)))
    monkeypatch.setattr(decode, "MAX_PIXELS", 1000)
    with pytest.raises(BadImage) as e:
        decode.load_image(path)
    assert e.value.category == "too_large"


def test_exif_orientation(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = decode.load_image(_save(tmp_path, "o.jpg", _jpeg(a, exif=exif.tobytes())))
    assert out.shape == (40, 20, 3)
    assert out[:15].mean() > 200 and out[25:].mean() < 50  # white half now on top


def test_missing_file(tmp_path):
    with pytest.raises(BadImage) as e:
        decode.load_image(str(tmp_path / "gone.jpg"))
    assert e.value.category == "missing"


def test_center_crop():
    a = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)
    out = decode.square_crop(a)
    assert out.shape == (6, 6, 3) and (out == a[:, 2:8]).all()


def test_trim_black_border():
    a = np.zeros((200, 300, 3), np.uint8)
    a[20:180, 50:270] = 180  # content 160 x 220, black frame around it
    a[90:110, 150:170] = 0   # a dark lesion inside must not be trimmed
    out = decode.square_crop(a, "trim_black")
    assert out.shape[0] == out.shape[1] and 150 <= out.shape[0] <= 160
    assert out[[0, -1], :].min() == 180 and out[:, [0, -1]].min() == 180
    assert decode.square_crop(a, "center").shape == (200, 200, 3)


def test_trim_black_falls_back_to_center():
    a = np.zeros((100, 100, 3), np.uint8)
    a[45:55, 45:55] = 255  # almost all black: trimming would keep 10%
    assert (decode.square_crop(a, "trim_black") == a).all()


def test_resize_antialiases():
    checker = ((np.indices((256, 256)).sum(0) % 2) * 255).astype(np.uint8)
    a = np.repeat(checker[..., None], 3, axis=2)
    out = decode.resize(a, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert abs(out.mean() - 127.5) < 3 and out.std() < 5  # aliasing would give 0 / 255


def test_preprocess_large_jpeg(tmp_path):
    a = np.zeros((600, 800, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, 800)[None, :]
    path = _save(tmp_path, "big.jpg", _jpeg(a))
    out = decode.preprocess(path, 32, "center")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # centre crop of a left-to-right red ramp: red increases along x, spans the middle of the ramp
    assert out[16, 1, 0] < 80 and out[16, -2, 0] > 175
    assert (decode.preprocess(open(path, "rb").read(), 32) == out).all()


# ---------------------------------------------------------------- BMP, TIFF, WebP, DICOM (issue 13)

def _gradient(h=16, w=20):
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    a[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    a[..., 2] = 77
    return a


@pytest.mark.parametrize("name,fmt,kw", [("a.bmp", "BMP", {}), ("a.tif", "TIFF", {}),
                                         ("a.tiff", "TIFF", {"compression": "tiff_lzw"}),
                                         ("a.webp", "WEBP", {"lossless": True})])
def test_bmp_tiff_webp_rgb(tmp_path, name, fmt, kw):
    a = _gradient()
    p = str(tmp_path / name)
    Image.fromarray(a).save(p, format=fmt, **kw)
    out = decode.load_image(p)
    assert out.dtype == np.uint8 and out.shape == (16, 20, 3)
    assert np.array_equal(out, a)
    assert name.endswith(decode.IMAGE_EXTENSIONS)


def test_palette_and_gray_bmp(tmp_path):
    p = str(tmp_path / "p.bmp")
    Image.fromarray(_gradient()).convert("P").save(p)
    assert decode.load_image(p).shape == (16, 20, 3)
    Image.fromarray(_gradient()[..., 0]).save(str(tmp_path / "g.bmp"))
    g = decode.load_image(str(tmp_path / "g.bmp"))
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 0] == _gradient()[..., 0]).all()


def test_16bit_tiff_gray_and_rgb(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    gray = np.tile(np.array([0, 257 * 128, 65535], np.uint16), (12, 4))
    tifffile.imwrite(str(tmp_path / "g16.tif"), gray)
    out = decode.load_image(str(tmp_path / "g16.tif"))
    assert out.shape == (12, 12, 3) and out[0, :3, 0].tolist() == [0, 128, 255]
    rgb = (_gradient().astype(np.uint16) * 257)
    tifffile.imwrite(str(tmp_path / "rgb16.tif"), rgb, photometric="rgb")
    assert np.array_equal(decode.load_image(str(tmp_path / "rgb16.tif")), _gradient())


def test_float_tiff_read_through_tifffile(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(str(tmp_path / "f.tif"), _gradient().astype(np.float32) / 255.0, photometric="rgb")
    out = decode.load_image(str(tmp_path / "f.tif"))
    assert out.shape == (16, 20, 3) and np.abs(out.astype(int) - _gradient()).max() <= 1


def test_multipage_tiff_first_page(tmp_path):
    first, second = _gradient(), 255 - _gradient()
    p = str(tmp_path / "multi.tif")
    Image.fromarray(first).save(p, save_all=True, append_images=[Image.fromarray(second)])
    assert Image.open(p).n_frames == 2
    assert np.array_equal(decode.load_image(p), first)
    with open(p, "rb") as f:  # bytes path of the cache
        assert np.array_equal(decode.load_image_bytes(f.read()), first)


def test_animated_webp_first_frame(tmp_path):
    frames = [Image.fromarray(_gradient()), Image.fromarray(255 - _gradient())]
    p = str(tmp_path / "anim.webp")
    frames[0].save(p, save_all=True, append_images=frames[1:], lossless=True, duration=100)
    assert np.array_equal(decode.load_image(p), _gradient())


@pytest.mark.parametrize("name", ["trunc.bmp", "trunc.tif", "trunc.webp"])
def test_truncated_new_formats_are_bad_images(tmp_path, name):
    fmt = {"bmp": "BMP", "tif": "TIFF", "webp": "WEBP"}[name.rsplit(".", 1)[1]]
    b = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(b, format=fmt)
    p = _save(tmp_path, name, b.getvalue()[: len(b.getvalue()) // 2])
    with pytest.raises(BadImage) as e:
        decode.load_image(p)
    assert e.value.category in ("truncated", "undecodable", "not_an_image")


def _dicom(path, a, photometric):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"  # VL photographic image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns = a.shape[:2]
    ds.SamplesPerPixel = 3 if a.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric
    if a.ndim == 3:
        ds.PlanarConfiguration = 0
    bits = a.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PixelData = a.tobytes()
    ds.save_as(str(path), enforce_file_format=True) if pydicom.__version__[0] >= "3" else \
        ds.save_as(str(path), write_like_original=False)
    return str(path)


def test_dicom_rgb_and_16bit_gray(tmp_path):
    p = _dicom(tmp_path / "rgb.dcm", _gradient(), "RGB")
    assert np.array_equal(decode.load_image(p), _gradient())
    gray = (_gradient()[..., 0].astype(np.uint16) * 257)
    p = _dicom(tmp_path / "g.dcm", gray, "MONOCHROME2")
    out = decode.load_image(p)
    assert out.shape == (16, 20, 3) and np.array_equal(out[..., 1], _gradient()[..., 0])
    with open(p, "rb") as f:
        assert np.array_equal(decode.load_image_bytes(f.read()), out)


def test_dicom_without_pydicom_names_the_extra(tmp_path, monkeypatch):
    import builtins
    data = b"\0" * 128 + b"DICM" + b"\0" * 64
    p = _save(tmp_path, "x.dcm", data)
    real_import = builtins.__import__

    def no_pydicom(name, *a, **kw):
        if name.split(".")[0] == "pydicom":
            raise ImportError("no pydicom")
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_pydicom)
    with pytest.raises(BadImage, match=r"needs_pydicom: .*melano_tf\[dicom\]"):
        decode.load_image(p)
    assert not decode.have_pydicom()


def test_bad_dicom_is_a_bad_image(tmp_path):
    pytest.importorskip("pydicom")
    p = _save(tmp_path, "bad.dcm", b"\0" * 128 + b"DICM" + b"garbage" * 10)
    with pytest.raises(BadImage) as e:
        decode.load_image(p)
    assert e.value.category in ("undecodable", "truncated")


# Crafted headers (a few bytes of pixel data) declaring a size above MAX_PIXELS, decoded in a process whose
# address space is capped a few hundred MB above what it holds: an allocation of the declared image
# (675 MB at 15000 x 15000 RGB; 10.8 GB at 60000 x 60000) would fail there as a MemoryError.
HEADER_BOMB = r"""
import json, resource, struct, sys, zlib
from melano_tf.data import decode
def png(w, h):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
def bmp(w, h):
    return (b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0) + b"\x00" * 64)
vm = int([ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmSize:")][0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 400 * 2**20, resource.RLIM_INFINITY))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {}
for path in sys.argv[1:]:
    w, h = map(int, path.rsplit("_", 1)[1].split(".")[0].split("x"))
    with open(path, "wb") as f:
        f.write((png if path.endswith(".png") else bmp)(w, h))
    try:
        decode.preprocess(path, 32)
        out[path] = "decoded"
    except decode.BadImage as e:
        out[path] = str(e)
out["grew_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(out))
"""


def test_header_bomb_is_refused_before_allocating(tmp_path):
    import json
    import os
    import subprocess
    import sys
    paths = [str(tmp_path / f"bomb_{size}.{kind}") for kind in ("png", "bmp") for size in ("15000x15000", "60000x60000")]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", HEADER_BOMB, *paths], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for path in paths:
        assert out[path].startswith("too_large: ") and "declared in the header" in out[path], (path, out[path])
    assert out["grew_mb"] < 50, out
