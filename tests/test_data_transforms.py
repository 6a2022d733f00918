"""Decoding and clip transforms: flip, pad+crop, erasing (per frame vs per clip), the test
transform against the original's per-frame PIL path, train-mode statistics against a per-frame
torchvision oracle, read_image."""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from config import get_cfg
from data import transforms as tf
from data.transforms import (
    ClipTransform,
    build_transforms,
    decode_rgb,
    random_erasing,
    random_hflip_pad_crop,
    read_image,
)
from utils.errors import UserError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def frames(t=6, h=8, w=6):
    """Distinct frames: every pixel value unique within a frame."""
    base = torch.arange(3 * h * w, dtype=torch.float32).view(3, h, w)
    return torch.stack([base + 1000 * i for i in range(t)])


def hflip_pad_crop(x, prob, padding, generator, consistent=False):
    """random_hflip_pad_crop on (T, C, H, W) frames (it takes and gives channels last)."""
    out = random_hflip_pad_crop(x.permute(0, 2, 3, 1), prob, padding, generator, consistent)
    return out.permute(0, 3, 1, 2)


def random_hflip(x, prob, generator, consistent=False):
    return hflip_pad_crop(x, prob, 0, generator, consistent)


def random_pad_crop(x, padding, generator, consistent=False):
    return hflip_pad_crop(x, 0.0, padding, generator, consistent)


def test_hflip_probabilities_and_consistency():
    x = frames(t=64)
    assert torch.equal(random_hflip(x, 0.0, gen()), x)
    assert torch.equal(random_hflip(x, 1.0, gen()), x.flip(-1))
    nhwc = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)   # the decoders' layout
    assert torch.equal(random_hflip(nhwc, 0.5, gen(1)), random_hflip(x, 0.5, gen(1)))
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
    both = hflip_pad_crop(x, 1.0, p, gen(3))          # flip first, then the same crops
    assert [crop_offset(both[i], x[i].flip(-1), p) for i in range(40)] == offsets


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


def write_jpegs(folder, t=4, size=(20, 10)):
    """Smooth random frames saved as JPEG (as the datasets' frames); returns the paths."""
    paths = []
    for i, img in enumerate(make_images(t, (size[0] // 2, size[1] // 2))):
        path = folder / f"f{i}.jpg"
        img.resize((size[1], size[0]), Image.BILINEAR).save(path, quality=90)
        paths.append(str(path))
    return paths


def original_test_clip(paths, size, mean=MEAN, std=STD):
    """The original's test path, frame by frame: PIL open, RGB, Resize, ToTensor, Normalize."""
    frames = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        ref = np.asarray(img, dtype=np.float32) / 255.0
        frames.append(((ref - np.array(mean)) / np.array(std)).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(frames)).float()


@pytest.mark.parametrize("size", [(20, 10), (16, 8)])       # as stored, and resized
def test_test_clip_equals_the_original_per_frame_pil_path(tmp_path, size):
    cfg = get_cfg()
    cfg.INPUT.SIZE_TEST = list(size)
    t = build_transforms(cfg, is_train=False)
    paths = write_jpegs(tmp_path)
    out = t([read_image(p) for p in paths])
    assert out.shape == (4, 3, *size) and out.dtype == torch.float32
    assert out.permute(0, 2, 3, 1).is_contiguous()             # channels last, as decoded
    # within one grey level (1/255 before normalisation); the decoders agree exactly here
    torch.testing.assert_close(out, original_test_clip(paths, size), rtol=0,
                               atol=1 / (255 * min(STD)))
    torch.testing.assert_close(out, original_test_clip(paths, size), rtol=0, atol=1e-5)
    pil = t([Image.open(p).convert("RGB") for p in paths])        # PIL frames are accepted too
    torch.testing.assert_close(pil, out, rtol=0, atol=1e-6)


def test_decode_rgb_uses_libjpeg_turbo_with_pil_as_fallback(tmp_path, monkeypatch):
    path = write_jpegs(tmp_path, t=1)[0]
    data = np.fromfile(path, dtype=np.uint8)
    expected = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decode_rgb(data), expected)
    grey = tmp_path / "grey.jpg"
    Image.new("L", (6, 4), 77).save(grey)
    assert (decode_rgb(np.fromfile(grey, dtype=np.uint8)) == 77).all()
    png = tmp_path / "f.png"
    Image.open(path).save(png)                                        # other formats: PIL
    assert torch.equal(decode_rgb(np.fromfile(png, dtype=np.uint8)), expected)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("unsupported JPEG")

    monkeypatch.setattr(tf, "decode_jpeg", refuse)              # a JPEG it refuses: PIL
    assert torch.equal(decode_rgb(data), expected) and calls == [1]
    with pytest.raises(OSError):
        decode_rgb(data[: len(data) // 2].copy())                 # neither can: OSError


def clip_statistics(clips, size, mean=MEAN, std=STD):
    """Per-clip measures of the augmentations: flipped (left half brighter), share of padded
    pixels (the normalised 0) and of erased pixels (PIXEL_MEAN written after normalising)."""
    pad = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
    fill = torch.tensor(mean).view(1, 3, 1, 1)
    out = []
    for c in clips:
        w = size[1]
        out.append([float((c[..., : w // 2].mean((1, 2, 3)) > c[..., w // 2:].mean((1, 2, 3)))
                          .float().mean()),
                    float(((c - pad).abs() < 1e-4).all(1).float().mean()),
                    float(((c - fill).abs() < 1e-6).all(1).float().mean())])
    return np.array(out).mean(0)


def original_train_clip(images, size, mean=MEAN, std=STD, prob=0.5, padding=4, re_prob=0.5):
    """The original's training transform, frame by frame (torchvision on PIL images, then
    reid-strong-baseline's RandomErasing on the normalised tensor)."""
    per_frame = T.Compose([T.Resize(size), T.RandomHorizontalFlip(prob), T.Pad(padding),
                           T.RandomCrop(size), T.ToTensor(), T.Normalize(mean, std)])
    frames = []
    for img in images:
        x = per_frame(img)
        if random.random() < re_prob:
            for _ in range(100):
                area = x.shape[1] * x.shape[2] * random.uniform(0.02, 0.4)
                aspect = random.uniform(0.3, 1 / 0.3)
                h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if w < x.shape[2] and h < x.shape[1]:
                    x1 = random.randint(0, x.shape[1] - h)
                    y1 = random.randint(0, x.shape[2] - w)
                    x[:, x1:x1 + h, y1:y1 + w] = torch.tensor(mean).view(3, 1)[:, :, None]
                    break
        frames.append(x)
    return torch.stack(frames)


def test_train_clip_statistics_equal_the_original_per_frame_path():
    size = (32, 16)
    ramp = np.linspace(40, 220, size[1], dtype=np.float32)[::-1]       # left half brighter
    base = np.broadcast_to(ramp[None, :, None], (*size, 3)).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(base))
    cfg = get_cfg()
    cfg.INPUT.SIZE_TRAIN, cfg.INPUT.PADDING = list(size), 4
    ours_t = build_transforms(cfg, is_train=True)
    frame = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    n = 150
    ours = [ours_t([frame] * 4, gen(s)) for s in range(n)]
    torch.manual_seed(0)
    random.seed(0)
    theirs = [original_train_clip([image] * 4, size) for _ in range(n)]
    a, b = clip_statistics(ours, size), clip_statistics(theirs, size)
    # flip rate 0.5 (sd ~0.02 over 600 frames); padded and erased shares (sd ~0.01)
    np.testing.assert_allclose(a, b, atol=0.05)
    assert 0.4 < a[0] < 0.6 and a[1] > 0.05 and a[2] > 0.03


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
    assert img.dtype == torch.uint8 and img.shape == (3, 8, 4)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=r"Cannot read image '.*broken.jpg' after 2 attempt"):
        read_image(str(bad), retries=2)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(UserError, match=r"truncated.jpg' after 1 attempt"):
        read_image(str(truncated), retries=1)
    with pytest.raises(UserError, match=r"missing.jpg"):
        read_image(str(tmp_path / "missing.jpg"), retries=1)
    calls = []
    real_decode = tf._decode_file

    def flaky(path):
        calls.append(path)
        if len(calls) < 3:
            raise OSError("transient")
        return real_decode(path)

    monkeypatch.setattr(tf, "_decode_file", flaky)
    monkeypatch.setattr(tf.time, "sleep", lambda s: None)
    assert read_image(str(good), retries=3).shape == (3, 8, 4) and len(calls) == 3
    calls.clear()
    with pytest.raises(UserError, match="after 2 attempt"):
        read_image(str(good), retries=2)
    assert len(calls) == 2
