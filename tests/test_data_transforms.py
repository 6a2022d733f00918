"""Clip transforms: flip, pad+crop, erasing (per frame vs per clip), test transform, read_image."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from config import get_cfg
from data import transforms as tf
from data.transforms import (
    ClipTransform,
    build_transforms,
    random_erasing,
    random_hflip,
    random_pad_crop,
    read_image,
)
from utils.errors import UserError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def frames(t=6, h=8, w=6):
    """Distinct frames: every pixel value unique within a frame."""
    base = torch.arange(3 * h * w, dtype=torch.float32).view(3, h, w)
    return torch.stack([base + 1000 * i for i in range(t)])


def test_hflip_probabilities_and_consistency():
    x = frames(t=64)
    assert torch.equal(random_hflip(x, 0.0, gen()), x)
    assert torch.equal(random_hflip(x, 1.0, gen()), x.flip(-1))
    per_frame = random_hflip(x, 0.5, gen(1))
    flipped = [torch.equal(per_frame[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(per_frame[i], x[i]) for i in range(64)]
    assert all(a != b for a, b in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54
    for seed in range(6):
        clip = random_hflip(x, 0.5, gen(seed), consistent=True)
        same = [torch.equal(clip[i], x[i].flip(-1)) for i in range(64)]
        assert len(set(same)) == 1


def crop_offset(out, frame, p):
    """The (top, left) offset of ``out`` in the zero-padded ``frame`` (oracle by search)."""
    padded = F.pad(frame, (p, p, p, p))
    h, w = frame.shape[-2:]
    hits = [(i, j) for i in range(2 * p + 1) for j in range(2 * p + 1)
            if torch.equal(padded[:, i:i + h, j:j + w], out)]
    assert len(hits) == 1
    return hits[0]


def test_pad_crop_matches_padding_oracle():
    x = frames(t=40) + 1                                   # no zeros inside the frames
    p = 2
    out = random_pad_crop(x, p, gen(3))
    offsets = [crop_offset(out[i], x[i], p) for i in range(40)]
    assert len(set(offsets)) > 5                          # drawn per frame
    assert {o[0] for o in offsets} == set(range(2 * p + 1))   # offsets 0..2p on each axis
    same = random_pad_crop(x, p, gen(3), consistent=True)
    assert len({crop_offset(same[i], x[i], p) for i in range(40)}) == 1
    assert torch.equal(random_pad_crop(x, 0, gen()), x)


def erased_box(out, x):
    """Rows and columns of the changed pixels; checks they form one filled rectangle."""
    changed = (out != x).any(dim=0)
    if not changed.any():
        return None
    rows = changed.any(dim=1).nonzero().ravel()
    cols = changed.any(dim=0).nonzero().ravel()
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    assert changed[top:bottom, left:right].all()
    assert changed.sum() == (bottom - top) * (right - left)
    return int(top), int(bottom - top), int(left), int(right - left)


def test_random_erasing_rectangle_value_and_area():
    h, w = 32, 16
    x = frames(t=50, h=h, w=w) + 10                       # never equal to the fill values
    value = (0.5, -0.25, 0.125)
    out = random_erasing(x, 1.0, value, gen(4))
    boxes = [erased_box(out[i], x[i]) for i in range(50)]
    assert all(b is not None for b in boxes)
    for i, (top, eh, left, ew) in enumerate(boxes):
        assert eh < h and ew < w
        assert 0.02 * h * w * 0.5 <= eh * ew <= 0.4 * h * w * 1.5   # rounding of h and w
        for c in range(3):
            assert (out[i, c, top:top + eh, left:left + ew] == value[c]).all()
    assert len(set(boxes)) > 10
    assert torch.equal(random_erasing(x, 0.0, value, gen(4)), x)
    same = random_erasing(x, 1.0, value, gen(5), consistent=True)
    assert len({erased_box(same[i], x[i]) for i in range(50)}) == 1
    half = random_erasing(x, 0.5, value, gen(6))
    n_erased = sum(erased_box(half[i], x[i]) is not None for i in range(50))
    assert 10 < n_erased < 40


def make_images(t=4, size=(20, 10)):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8))
            for _ in range(t)]


def test_test_transform_is_resize_totensor_normalize():
    cfg = get_cfg()
    cfg.INPUT.SIZE_TEST = [16, 8]
    t = build_transforms(cfg, is_train=False)
    images = make_images()
    out = t(images)
    assert out.shape == (4, 3, 16, 8) and out.dtype == torch.float32
    mean = np.array(cfg.INPUT.PIXEL_MEAN)
    std = np.array(cfg.INPUT.PIXEL_STD)
    for i, img in enumerate(images):
        ref = np.asarray(img.resize((8, 16), Image.BILINEAR), dtype=np.float32) / 255.0
        ref = ((ref - mean) / std).transpose(2, 0, 1)
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-5)


def test_train_transform_is_seeded_and_per_frame_or_per_clip():
    cfg = get_cfg()
    cfg.INPUT.SIZE_TRAIN = [16, 8]
    cfg.INPUT.PADDING = 2
    t = build_transforms(cfg, is_train=True)
    assert t.train and not t.clip_consistent
    images = make_images(t=1) * 32                       # 32 copies of one frame
    a, b = t(images, gen(11)), t(images, gen(11))
    assert a.shape == (32, 3, 16, 8) and torch.equal(a, b)
    assert not torch.equal(a, t(images, gen(12)))
    assert len({tuple(a[i].flatten()[:40].tolist()) for i in range(32)}) > 4   # per frame
    cfg.INPUT.CLIP_CONSISTENT_AUG = True
    c = build_transforms(cfg, is_train=True)(images, gen(11))
    assert all(torch.equal(c[0], c[i]) for i in range(32))
    with pytest.raises(ValueError):
        t(images)
    assert isinstance(build_transforms(cfg, True), ClipTransform)


def test_read_image_retries_then_names_the_file(tmp_path, monkeypatch):
    good = tmp_path / "ok.jpg"
    Image.new("RGB", (4, 8), (10, 20, 30)).save(good)
    img = read_image(str(good))
    assert img.mode == "RGB" and img.size == (4, 8)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=r"Cannot read image '.*broken.jpg' after 2 attempt"):
        read_image(str(bad), retries=2)
    with pytest.raises(UserError, match=r"missing.jpg"):
        read_image(str(tmp_path / "missing.jpg"), retries=1)
    calls = []
    real_open = Image.open

    def flaky(path):
        calls.append(path)
        if len(calls) < 3:
            raise OSError("transient")
        return real_open(path)

    monkeypatch.setattr(tf.Image, "open", flaky)
    monkeypatch.setattr(tf.time, "sleep", lambda s: None)
    assert read_image(str(good), retries=3).size == (4, 8) and len(calls) == 3
    calls.clear()
    with pytest.raises(UserError, match="after 2 attempt"):
        read_image(str(good), retries=2)
    assert len(calls) == 2
