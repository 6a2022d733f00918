"""Frames of every PIL mode: the 8-bit RGB pixels training reads (``read_image``), or a refusal
that names the file and the mode, in training and in ``tools.verify``.

Each case writes a tiny image in ``tmp_path`` and compares the decoded pixels with the RGB
values the rules of :mod:`data.transforms` give (16-bit grey: the high byte; transparency:
composited over black; CMYK: ``(255 - C) (255 - K) / 255``). PNG holds 1, L, LA, P, RGB, RGBA
and 16-bit grey; the other modes come from TIFF files (PIL opens a file by its content, so a
TIFF named ``.png`` is a frame of a dataset too).
"""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from config import load_cfg
from data import transforms as tf
from data.transforms import MODE_FIX, FrameModeError, decode_rgb, pil_rgb, read_image
from data.verification import decode_error, verify_dataset
from tools import verify
from utils.errors import UserError


def _hwc(t: torch.Tensor) -> list:
    """(3, H, W) uint8 -> nested (H, W, 3) lists."""
    return t.permute(1, 2, 0).tolist()


def _palette(img: Image.Image) -> Image.Image:
    img.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0])
    return img


def _p_image() -> Image.Image:
    """A 3x1 palette image of entries 0, 1, 2."""
    img = _palette(Image.new("P", (3, 1)))
    for x in range(3):
        img.putpixel((x, 0), x)
    return img


def png16(path: Path, values: np.ndarray, color_type: int) -> Path:
    """A 16-bit PNG (color type 0 grey, 2 RGB) of uint16 ``values`` (H, W, C), written by
    hand: PIL writes no 16-bit RGB PNG."""
    h, w = values.shape[:2]
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in values.reshape(h, -1))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


GREY16 = np.array([[0, 255, 256, 40000, 65535]], dtype=np.uint16)
GREY16_RGB = [[[v >> 8] * 3 for v in GREY16[0].tolist()]]              # 0, 0, 1, 156, 255


def write_case(path: Path, case: str) -> Path:
    """Write the image of one case to ``path`` (its suffix is kept; the content decides)."""
    if case == "L":
        Image.fromarray(np.array([[0, 77, 255]], np.uint8)).save(path, format="PNG")
    elif case == "1":
        img = Image.new("1", (2, 1))
        img.putpixel((1, 0), 1)
        img.save(path, format="PNG")
    elif case == "P":
        _p_image().save(path, format="PNG")
    elif case == "P transparent entry":
        _p_image().save(path, format="PNG", transparency=1)
    elif case == "P palette alpha":
        _p_image().save(path, format="PNG", transparency=bytes([255, 128, 0]))
    elif case == "LA":
        Image.fromarray(np.array([[[100, 255], [100, 0], [100, 128]]], np.uint8), "LA").save(
            path, format="PNG")
    elif case == "RGBA":
        rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], np.uint8)
        Image.fromarray(rgba, "RGBA").save(path, format="PNG")
    elif case == "RGB transparent colour":
        Image.fromarray(np.array([[[1, 2, 3], [9, 8, 7]]], np.uint8)).save(
            path, format="PNG", transparency=(1, 2, 3))
    elif case == "L transparent level":
        Image.fromarray(np.array([[50, 9]], np.uint8)).save(path, format="PNG", transparency=9)
    elif case == "CMYK":
        Image.fromarray(np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 128, 0, 64],
                                   [10, 20, 30, 255]]], np.uint8), "CMYK").save(path, format="TIFF")
    elif case == "I;16 (PNG of a uint16 array)":
        Image.fromarray(GREY16).save(path, format="PNG")
    elif case == "I;16 transparent level":
        Image.fromarray(GREY16).save(path, format="PNG", transparency=40000)
    elif case == "I;16B":
        Image.fromarray(GREY16.byteswap().view(">u2")).save(path, format="TIFF")
    elif case == "I 16-bit values":
        Image.fromarray(GREY16.astype(np.int32)).save(path, format="TIFF")
    elif case == "I 8-bit values":
        Image.fromarray(np.array([[0, 77, 255]], np.int32)).save(path, format="TIFF")
    elif case == "16-bit RGB PNG":
        png16(path, np.array([[[0, 255, 256], [65535, 32768, 1000]]], np.uint16), 2)
    elif case == "I negative":
        Image.fromarray(np.array([[-1, 5]], np.int32)).save(path, format="TIFF")
    elif case == "I above 16 bits":
        Image.fromarray(np.array([[0, 70000]], np.int32)).save(path, format="TIFF")
    elif case == "F":
        Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(path, format="TIFF")
    else:
        raise AssertionError(case)
    return path


DECODED = {
    "L": [[[0] * 3, [77] * 3, [255] * 3]],
    "1": [[[0] * 3, [255] * 3]],
    "P": [[[10, 20, 30], [200, 100, 50], [0, 255, 0]]],
    "P transparent entry": [[[10, 20, 30], [0, 0, 0], [0, 255, 0]]],
    # round(c * a / 255) with the alphas 255, 128, 0 of the palette entries
    "P palette alpha": [[[10, 20, 30], [100, 50, 25], [0, 0, 0]]],
    "LA": [[[100] * 3, [0] * 3, [50] * 3]],
    "RGBA": [[[200, 100, 50], [0, 0, 0], [100, 50, 25]]],
    "RGB transparent colour": [[[0, 0, 0], [9, 8, 7]]],
    "L transparent level": [[[50] * 3, [0] * 3]],
    # round((255 - C) (255 - K) / 255): (255, 255, 255), (0, 255, 255), (191, 95, 191), black
    "CMYK": [[[255, 255, 255], [0, 255, 255], [191, 95, 191], [0, 0, 0]]],
    "I;16 (PNG of a uint16 array)": GREY16_RGB,
    "I;16 transparent level": [[*GREY16_RGB[0][:3], [0] * 3, GREY16_RGB[0][4]]],
    "I;16B": GREY16_RGB,
    "I 16-bit values": GREY16_RGB,
    "I 8-bit values": [[[0] * 3, [77] * 3, [255] * 3]],
    "16-bit RGB PNG": [[[0, 0, 1], [255, 128, 3]]],          # PIL keeps the high bytes
}
MODES = {"I;16 (PNG of a uint16 array)": "I;16", "I;16 transparent level": "I;16",
         "16-bit RGB PNG": "RGB", "I 16-bit values": "I", "I 8-bit values": "I",
         "P transparent entry": "P", "P palette alpha": "P", "RGB transparent colour": "RGB",
         "L transparent level": "L", "I negative": "I", "I above 16 bits": "I"}
REFUSED = {"F": "PIL mode 'F' (32-bit float pixels) has no defined range",
           "I negative": "PIL mode 'I' (32-bit integer pixels) with values from -1 to 5 is "
                         "outside the ranges",
           "I above 16 bits": "PIL mode 'I' (32-bit integer pixels) with values from 0 to 70000"}


@pytest.mark.parametrize("case", list(DECODED))
def test_every_mode_decodes_to_the_expected_rgb(tmp_path, case):
    path = write_case(tmp_path / "frame.png", case)
    with Image.open(path) as img:
        assert img.mode == MODES.get(case, case.split()[0])          # the mode under test
    decoded = read_image(str(path))
    assert decoded.dtype == torch.uint8 and decoded.shape[0] == 3
    assert _hwc(decoded) == DECODED[case]
    assert decoded.permute(1, 2, 0).is_contiguous()               # the decoders' layout
    assert decode_error(str(path)) is None                        # tools.verify agrees


def test_a_16_bit_frame_is_no_longer_all_white(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16) * 1024).reshape(8, 8)  # 0 .. 64512
    path = tmp_path / "depth.png"
    Image.fromarray(ramp).save(path)
    decoded = read_image(str(path))
    assert not (decoded == 255).all()
    assert torch.equal(decoded[0], torch.from_numpy((ramp >> 8).astype(np.uint8)))
    assert torch.equal(decoded[0], decoded[1]) and torch.equal(decoded[0], decoded[2])


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_modes_are_named_by_training_and_verify(tmp_path, case, monkeypatch):
    path = write_case(tmp_path / "frame.png", case)
    calls = []
    real = tf._decode_file
    monkeypatch.setattr(tf, "_decode_file", lambda p: calls.append(p) or real(p))
    with pytest.raises(UserError) as e:
        read_image(str(path), retries=3)
    msg = str(e.value)
    assert msg.startswith(f"Image '{path}' is not read: {REFUSED[case]}")
    assert msg.endswith(f"Fix: {MODE_FIX}.") and len(calls) == 1       # no retry: it is the file
    kind, text = decode_error(str(path))
    assert kind == "mode" and text.startswith(REFUSED[case])


def test_modes_without_a_file_format_here():
    """Premultiplied alpha (a TIFF's associated alpha), HSV, RGBX, LAB and an unknown mode."""
    rgba = np.array([[[200, 100, 50, 128]]], np.uint8)
    premultiplied = Image.fromarray(rgba, "RGBA").convert("RGBa")       # stores c * a / 255
    assert pil_rgb(premultiplied).tolist() == [[[100, 50, 25]]]
    la = Image.frombytes("La", (1, 1), bytes([50, 128]))
    assert pil_rgb(la).tolist() == [[[50, 50, 50]]]
    hsv = Image.fromarray(np.array([[[0, 255, 255], [85, 255, 255], [170, 255, 128]]], np.uint8),
                          "HSV")
    assert pil_rgb(hsv).tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 128]]]
    rgbx = Image.frombytes("RGBX", (1, 1), bytes([1, 2, 3, 99]))
    assert pil_rgb(rgbx).tolist() == [[[1, 2, 3]]]
    ycbcr = Image.fromarray(np.array([[[255, 128, 128]]], np.uint8), "YCbCr")
    assert pil_rgb(ycbcr).tolist() == [[[255, 255, 255]]]
    with pytest.raises(FrameModeError, match=r"PIL mode 'LAB' \(CIE L\*a\*b\* pixels\)"):
        pil_rgb(Image.new("LAB", (1, 1)))

    class Unknown:
        mode, info, has_transparency_data = "XYZ", {}, False

    with pytest.raises(FrameModeError, match="PIL mode 'XYZ' has no defined conversion"):
        pil_rgb(Unknown())


def test_the_jpeg_fast_path_decodes_cmyk_and_grey_like_the_rule(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8), "CMYK").save(path,
                                                                                  quality=95)
    with Image.open(path) as img:
        cmyk = np.asarray(img).astype(np.int64)                   # as decoded (lossy)
    expected = np.round((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255).astype(np.uint8)
    calls = []
    real = tf.decode_jpeg
    monkeypatch.setattr(tf, "decode_jpeg", lambda *a, **k: calls.append(1) or real(*a, **k))
    data = np.fromfile(path, dtype=np.uint8)
    assert np.array_equal(decode_rgb(data).permute(1, 2, 0).numpy(), expected) and calls == [1]
    assert decode_error(str(path)) is None                      # tools.verify reads it too
    grey = tmp_path / "grey.jpg"
    Image.new("L", (4, 2), 77).save(grey)
    assert (read_image(str(grey)) == 77).all() and len(calls) == 2


def test_clip_transform_takes_pil_frames_of_any_mode():
    t = tf.ClipTransform((1, 5), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))   # ToTensor: x / 255
    out = t([Image.fromarray(GREY16), _p_image().resize((5, 1))])   # 16-bit grey, palette
    assert out.shape == (2, 3, 1, 5)
    torch.testing.assert_close(out[0, :, 0].T * 255, torch.tensor(GREY16_RGB[0]).float())
    torch.testing.assert_close(out[1, :, 0].T * 255, torch.from_numpy(
        pil_rgb(_p_image().resize((5, 1)))[0]).float())


# ------------------------------------------------------------------------------ tools.verify
def write_folder(root: Path) -> Path:
    """A minimal folder dataset (one 2-frame tracklet per split), no attributes."""
    for split, pid in (("train", 1), ("query", 2), ("gallery", 2)):
        for k in (1, 2):
            path = root / split / str(pid) / "1_0001" / f"{k:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 8), (10 * k,) * 3).save(path)
    return root


def test_verify_reports_a_refused_mode_and_reads_a_16_bit_frame(tmp_path, capsys):
    root = write_folder(tmp_path / "mine")
    floats = root / "query" / "2" / "1_0001" / "002.png"
    write_case(floats, "F")                                     # a TIFF of float pixels
    deep = root / "train" / "1" / "1_0001" / "001.png"
    Image.fromarray(GREY16).save(deep)                          # 16-bit grey: read
    code = verify.main(["--config_file", "", "DATASETS.NAME", "folder", "DATASETS.ROOT_DIR",
                        str(root), "ATTR_RECOG_ON", "False", "--no-progress", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert (f"  - {floats}: is not read by training: PIL mode 'F' (32-bit float pixels) has "
            "no defined range: 0..1 and 0..255 are both in use; query tracklet 0") in out
    assert f"  fix: {MODE_FIX}" in out
    assert "FAILED: 1 problem(s) (images 1)" in out and str(deep) not in out
    floats.write_bytes(deep.read_bytes())                       # now 16-bit grey too: clean
    report = verify_dataset(load_cfg(None, ["DATASETS.NAME", "folder", "DATASETS.ROOT_DIR",
                                            str(root), "ATTR_RECOG_ON", "False"]), workers=1)
    assert report.ok, report.format()
