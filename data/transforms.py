"""Image reading and clip transforms, batched over the frames of a clip (SPEC §2).

Train: Resize(SIZE_TRAIN) -> RandomHorizontalFlip(PROB) -> Pad(PADDING) ->
RandomCrop(SIZE_TRAIN) -> ToTensor -> Normalize -> RandomErasing(RE_PROB). Test: Resize ->
ToTensor -> Normalize. Resizing is done per frame with PIL (bilinear, as torchvision on PIL
images); everything after it runs on the stacked (T, 3, H, W) tensor. Flip, pad and crop act
on pixels alone, so doing them after ToTensor gives the same values as the original order.

Every random draw comes from the ``torch.Generator`` passed in (never the global RNG), so a
clip is a pure function of its generator's seed. ``clip_consistent`` False draws per frame, as
the original (which transforms frame by frame); True draws once for the whole clip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from utils.errors import UserError

__all__ = [
    "ClipTransform",
    "build_transforms",
    "frames_to_tensor",
    "random_erasing",
    "random_hflip",
    "random_pad_crop",
    "read_image",
]


def read_image(path: str, retries: int = 3) -> Image.Image:
    """Read an image as RGB, trying ``retries`` times before failing.

    Args:
        path: image file.
        retries: number of attempts (DATALOADER.READ_RETRIES); a short pause between them
            rides out transient file-system errors.

    Raises:
        UserError: naming the file, after the last failed attempt.
    """
    error: Exception | None = None
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(0.05 * attempt)
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except OSError as e:
            error = e
    raise UserError(f"Cannot read image '{path}' after {max(1, retries)} attempt(s): {error}. "
                    "Fix: restore the file (re-extract the dataset archive) or remove its "
                    "tracklet from the split files.")


def frames_to_tensor(images: Sequence[Image.Image], size: Sequence[int]) -> torch.Tensor:
    """Resize PIL frames to ``size`` (bilinear) and stack them.

    Args:
        images: T RGB PIL images.
        size: [height, width].

    Returns:
        uint8 tensor (T, 3, H, W), a channels-last view of the stacked pixels.
    """
    h, w = int(size[0]), int(size[1])
    arrays = [np.asarray(img if img.size == (w, h) else img.resize((w, h), Image.BILINEAR))
              for img in images]
    stacked = torch.from_numpy(np.stack(arrays))                       # (T, H, W, 3)
    return stacked.permute(0, 3, 1, 2)              # (T, 3, H, W) view; later ops copy anyway


def _uniform(n: int, generator: torch.Generator, consistent: bool, *extra: int) -> torch.Tensor:
    """Uniform [0, 1) draws (n, *extra); with ``consistent`` one draw repeated over n."""
    draws = torch.rand((1 if consistent else n, *extra), generator=generator)
    return draws.expand(n, *extra) if consistent else draws


def random_hflip(x: torch.Tensor, prob: float, generator: torch.Generator,
                 consistent: bool = False) -> torch.Tensor:
    """Flip frames horizontally with probability ``prob``.

    Args:
        x: (T, C, H, W) frames.
        prob: flip probability (INPUT.PROB).
        generator: source of the draws.
        consistent: one draw for all frames.

    Returns:
        (T, C, H, W) tensor.
    """
    flip = (_uniform(x.shape[0], generator, consistent) < prob).tolist()        # (T,)
    if not any(flip):
        return x
    if all(flip):
        return x.flip(-1)
    # Per-frame views stacked once: cheaper than a masked select over the clip.
    return torch.stack([f.flip(-1) if fl else f for f, fl in zip(x, flip, strict=True)])


def random_pad_crop(x: torch.Tensor, padding: int, generator: torch.Generator,
                    consistent: bool = False) -> torch.Tensor:
    """Zero-pad by ``padding`` pixels, then crop back to the input size at a random offset.

    As torchvision's Pad + RandomCrop: the offset is uniform in ``[0, 2 * padding]`` on each
    axis, drawn per frame (or once with ``consistent``).

    Args:
        x: (T, C, H, W) frames.
        padding: INPUT.PADDING.
        generator: source of the draws.
        consistent: one offset for all frames.

    Returns:
        (T, C, H, W) tensor.
    """
    if padding <= 0:
        return x
    t, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))                # (T, C, H+2p, W+2p)
    offsets = (_uniform(t, generator, consistent, 2) * (2 * padding + 1)).long().tolist()
    if consistent:
        i, j = offsets[0]
        return padded[:, :, i:i + h, j:j + w].contiguous()
    # One strided view per frame, stacked once (a gather over the clip is several times slower).
    return torch.stack([padded[k, :, i:i + h, j:j + w] for k, (i, j) in enumerate(offsets)])


def random_erasing(x: torch.Tensor, prob: float, value: Sequence[float],
                   generator: torch.Generator, consistent: bool = False,
                   area: tuple[float, float] = (0.02, 0.4), min_aspect: float = 0.3,
                   attempts: int = 100, inplace: bool = False) -> torch.Tensor:
    """Random erasing (Zhong et al., AAAI 2020) as in reid-strong-baseline.

    With probability ``prob`` a frame gets one rectangle filled with ``value`` (per channel;
    the original writes PIXEL_MEAN into the normalised tensor). The rectangle's area is
    uniform in ``area`` times the frame area and its aspect ratio uniform in
    ``[min_aspect, 1 / min_aspect]``; of up to ``attempts`` draws the first that fits
    (``h < H`` and ``w < W``) is used, its corner uniform over the valid positions. The
    draws of all frames and attempts are made at once; the first fitting one is picked.

    Args:
        x: (T, C, H, W) normalised frames.
        prob: erasing probability (INPUT.RE_PROB).
        value: fill value per channel (C,).
        generator: source of the draws.
        consistent: one draw (probability, rectangle) for all frames.
        area: range of the erased fraction of the frame.
        min_aspect: smallest aspect ratio; the largest is its inverse.
        attempts: draws tried per frame.
        inplace: write into ``x`` instead of a copy.

    Returns:
        (T, C, H, W) tensor.
    """
    t, c, h, w = x.shape
    apply = _uniform(t, generator, consistent) < prob                          # (T,)
    u = _uniform(t, generator, consistent, attempts, 2)                        # (T, A, 2)
    target = (area[0] + (area[1] - area[0]) * u[..., 0].double()) * (h * w)
    aspect = min_aspect + (1.0 / min_aspect - min_aspect) * u[..., 1].double()
    eh = torch.round(torch.sqrt(target * aspect)).long()                       # (T, A)
    ew = torch.round(torch.sqrt(target / aspect)).long()
    fits = (eh < h) & (ew < w)
    first = fits.long().argmax(dim=1, keepdim=True)                            # (T, 1)
    apply &= fits.any(dim=1)
    eh, ew = eh.gather(1, first)[:, 0], ew.gather(1, first)[:, 0]              # (T,)
    corner = _uniform(t, generator, consistent, 2)                             # (T, 2)
    top = (corner[:, 0] * (h - eh + 1)).long()
    left = (corner[:, 1] * (w - ew + 1)).long()
    frames = apply.nonzero().ravel().tolist()
    if not frames:
        return x
    out = x if inplace else x.clone()
    fill = torch.as_tensor(value, dtype=x.dtype).view(c, 1, 1)
    boxes = torch.stack([top, eh, left, ew], dim=1).tolist()                   # (T, 4)
    for k in ([slice(None)] if consistent else frames):    # a rectangle is a view: fill in place
        y, bh, x0, bw = boxes[0 if consistent else k]
        out[k, :, y:y + bh, x0:x0 + bw] = fill
    return out


class ClipTransform:
    """Resize, (augment,) convert and normalise the frames of a clip in one batch.

    Args:
        size: [height, width] of the output frames.
        mean: normalisation mean per channel (also the random-erasing fill).
        std: normalisation std per channel.
        train: apply the random augmentations.
        flip_prob: horizontal flip probability.
        padding: pad before the random crop (0 disables pad and crop).
        erase_prob: random erasing probability.
        clip_consistent: one draw per clip instead of per frame.
    """

    def __init__(self, size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 train: bool = False, flip_prob: float = 0.5, padding: int = 10,
                 erase_prob: float = 0.5, clip_consistent: bool = False) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.train = train
        self.flip_prob = flip_prob
        self.padding = int(padding)
        self.erase_prob = erase_prob
        self.clip_consistent = clip_consistent

    def __call__(self, images: Sequence[Image.Image],
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform T frames.

        Args:
            images: T RGB PIL images.
            generator: source of the random draws (required when training).

        Returns:
            float32 tensor (T, 3, H, W), normalised.
        """
        x = frames_to_tensor(images, self.size)                                # (T, 3, H, W)
        if self.train:
            if generator is None:
                raise ValueError("a training transform needs a torch.Generator")
            x = random_hflip(x, self.flip_prob, generator, self.clip_consistent)
            x = random_pad_crop(x, self.padding, generator, self.clip_consistent)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        x = x.float().div_(255.0).sub_(mean).div_(std)
        if self.train and self.erase_prob > 0:
            x = random_erasing(x, self.erase_prob, self.mean, generator, self.clip_consistent,
                               inplace=True)
        return x.contiguous()                   # a no-op after the training augmentations

    def __repr__(self) -> str:
        aug = (f", flip={self.flip_prob}, pad={self.padding}, erase={self.erase_prob}, "
               f"clip_consistent={self.clip_consistent}" if self.train else "")
        return f"ClipTransform(size={self.size}, train={self.train}{aug})"


def build_transforms(cfg, is_train: bool) -> ClipTransform:
    """The clip transform of the config (INPUT.*): training augmentations or test-time only.

    Args:
        cfg: the config (yacs CfgNode).
        is_train: training transform (SIZE_TRAIN and augmentations) or test (SIZE_TEST).
    """
    c = cfg.INPUT
    if is_train:
        return ClipTransform(c.SIZE_TRAIN, c.PIXEL_MEAN, c.PIXEL_STD, train=True,
                             flip_prob=c.PROB, padding=c.PADDING, erase_prob=c.RE_PROB,
                             clip_consistent=c.CLIP_CONSISTENT_AUG)
    return ClipTransform(c.SIZE_TEST, c.PIXEL_MEAN, c.PIXEL_STD, train=False)

