"""Image decoding and clip transforms, batched over the frames of a clip.

Train: Resize(SIZE_TRAIN) -> RandomHorizontalFlip(PROB) -> Pad(PADDING) ->
RandomCrop(SIZE_TRAIN) -> ToTensor -> Normalize -> RandomErasing(RE_PROB). Test: Resize ->
ToTensor -> Normalize. JPEG files are decoded by libjpeg-turbo (``torchvision.io.decode_jpeg``,
the same pixels as PIL's decoder), other formats and files it refuses by PIL. Frames stay uint8
through resize (per frame with PIL, bilinear, as torchvision on PIL images), flip, pad and crop,
which act on pixels alone; the crop's copy converts them to float32 in place in the clip's
(channels-last) storage, which is normalised in one pass, then erased (the original erases the
normalised tensor).

Every PIL mode of a frame decodes to 8-bit RGB by one rule (:func:`pil_rgb`), or is refused by
name (:class:`FrameModeError`; training and ``python -m tools.verify`` report it):

* ``RGB`` as stored; ``L`` and ``1`` (0 or 255) as grey ``(v, v, v)``; ``P`` its palette
  colours; ``RGBX`` its three colour channels; ``YCbCr`` and ``HSV`` by PIL's conversions;
  ``CMYK`` as ``round((255 - C) (255 - K) / 255)`` per channel, no colour management (as PIL
  and libjpeg-turbo, which give the same pixels for CMYK JPEGs).
* 16-bit grey (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, e.g. ``Image.fromarray(uint16
  array)`` saved as PNG): the high byte, ``v >> 8`` (0..65535 onto 0..255; what PIL keeps of
  16-bit RGB PNGs). PIL's own conversion clips such values to 255.
* ``I`` (32-bit integers): values within 0..255 as 8-bit grey, otherwise, within 0..65535, as
  16-bit grey (``v >> 8``); a frame with a value outside 0..65535 is refused.
* Transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent palette entry, ``L`` /
  ``RGB`` / 16-bit grey with a transparent colour): composited over black, ``round(c * a /
  255)``: what the image shows, whatever colour its encoder stored under transparent pixels,
  and black as the zero padding of the training crop. ``RGBa`` and ``La`` (premultiplied
  alpha) store that composite already: their colour channels are taken as they are.
* Refused: ``F`` (32-bit float: its pixels have no defined range, 0..1 and 0..255 are both in
  use), ``LAB`` (PIL has no colorimetric conversion of it to RGB) and any other mode.

Every random draw comes from the ``torch.Generator`` passed in (never the global RNG), so a
clip is a pure function of its generator's seed. ``clip_consistent`` False draws per frame, as
the original (which transforms frame by frame); True draws once for the whole clip.
"""

from __future__ import annotations

import io
import math
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import get_worker_info

try:   # libjpeg-turbo; torchvision 0.29 deprecates it for TorchCodec: PIL when it is gone
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover - a future torchvision
    decode_jpeg = None

from data.datasets import frame_fix
from utils.errors import UserError

__all__ = [
    "MODE_FIX",
    "ClipTransform",
    "FrameModeError",
    "build_transforms",
    "decode_rgb",
    "pil_rgb",
    "random_erasing",
    "random_hflip_pad_crop",
    "read_image",
]

JPEG_MAGIC = b"\xff\xd8"          # start-of-image marker of every JPEG file
# torchvision 0.29 warns on every decode that its decoders are deprecated (for TorchCodec);
# they work, and the fallback above covers their removal: no warning per frame.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of "
                        "TorchVision are deprecated", category=DeprecationWarning)


class FrameModeError(ValueError):
    """A frame whose PIL mode (or pixel range) has no defined 8-bit RGB decoding.

    The message names the mode and why, e.g. ``"PIL mode 'F' (32-bit float pixels) has no
    defined range: ..."``; :data:`MODE_FIX` says what to do about it.
    """


MODE_FIX = ("save the frame as an 8-bit RGB or grey image (PIL mode 'RGB' or 'L'), its values "
            "scaled to 0..255, e.g. Image.fromarray(scaled.astype(numpy.uint8)).save('frame.png')")
_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N")
_CONVERTED = ("L", "1", "P", "RGBX", "YCbCr", "HSV", "CMYK")      # by PIL's conversion
_REFUSED = {"F": "(32-bit float pixels) has no defined range: 0..1 and 0..255 are both in use",
            "LAB": "(CIE L*a*b* pixels) has no colorimetric conversion to RGB in PIL"}


def _grey(values: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) of grey levels (H, W) (one copy)."""
    return np.repeat(values[:, :, None], 3, axis=2)


def _over_black(rgba: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3): colours (H, W, 3+) composited over black by the alpha of channel 3,
    ``round(c * a / 255)`` (exact in integers: ``c * a / 255`` is never a half)."""
    color = rgba[..., :3].astype(np.uint16)
    color *= rgba[..., 3:4]
    color += 127
    color //= 255
    return color.astype(np.uint8)


def _integer_grey(img: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3) of a 16-bit (``I;16*``) or 32-bit (``I``) grey frame (see the module
    docstring); a transparent grey level is black."""
    values = np.asarray(img)
    shift = 8
    if img.mode == "I":
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise FrameModeError(
                f"PIL mode 'I' (32-bit integer pixels) with values from {low} to {high} is "
                "outside the ranges of 8-bit (0..255) and 16-bit (0..65535) pixels")
        shift = 8 if high > 255 else 0
    grey = (values >> shift).astype(np.uint8)
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):
        grey[values == transparent] = 0
    return _grey(grey)


def pil_rgb(img: Image.Image) -> np.ndarray:
    """The 8-bit RGB pixels of a PIL image of any mode (the rules of the module docstring).

    Args:
        img: the image (loaded or not).

    Returns:
        uint8 array (H, W, 3), contiguous and writable.

    Raises:
        FrameModeError: a mode without a defined decoding (``F``, ``LAB``, an unknown mode)
            or an ``I`` frame with values outside 0..65535; the message names the mode.
    """
    mode = img.mode
    if mode in _GREY16 or mode == "I":
        return _integer_grey(img)
    if mode in _REFUSED:
        raise FrameModeError(f"PIL mode {mode!r} {_REFUSED[mode]}")
    if mode == "RGB" and "transparency" not in img.info:
        return np.array(img)
    if mode in ("RGBa", "La"):                 # premultiplied: the composite over black
        color = np.array(img)[..., :-1]
        return _grey(color[..., 0]) if mode == "La" else np.ascontiguousarray(color)
    if img.has_transparency_data:              # RGBA, LA, PA, or a transparent colour or entry
        return _over_black(np.asarray(img.convert("RGBA")))
    if mode in _CONVERTED:
        return np.array(img.convert("RGB"))
    raise FrameModeError(f"PIL mode {mode!r} has no defined conversion to 8-bit RGB")


def decode_rgb(data: np.ndarray) -> torch.Tensor:
    """Decode an encoded image to RGB pixels.

    JPEG data goes to libjpeg-turbo (``torchvision.io.decode_jpeg``: the pixels of PIL's
    ``Image.open(...).convert("RGB")``, faster); other formats, and JPEG files it refuses, to
    PIL, whose image of any mode becomes RGB by :func:`pil_rgb`.

    Args:
        data: uint8 array (n,) of the file's bytes.

    Returns:
        uint8 tensor (3, H, W), a view of (H, W, 3) contiguous memory.

    Raises:
        OSError: PIL cannot decode the data either (its message says why).
        FrameModeError: a PIL mode without a defined RGB decoding (see :func:`pil_rgb`).
    """
    if decode_jpeg is not None and data[:2].tobytes() == JPEG_MAGIC:
        try:
            return decode_jpeg(torch.from_numpy(data), mode=ImageReadMode.RGB)
        except RuntimeError:
            pass                       # truncated or unusual: PIL decodes it or says why
    with Image.open(io.BytesIO(data.tobytes())) as img:
        rgb = pil_rgb(img)                                                  # (H, W, 3)
    return torch.from_numpy(rgb).permute(2, 0, 1)


def _decode_file(path: str) -> torch.Tensor:
    """uint8 (3, H, W) RGB pixels of an image file (one attempt; OSError on failure)."""
    return decode_rgb(np.fromfile(path, dtype=np.uint8))


def read_image(path: str, retries: int = 3) -> torch.Tensor:
    """Read an image as RGB, trying ``retries`` times before failing.

    Args:
        path: image file.
        retries: number of attempts (DATALOADER.READ_RETRIES); a short pause between them
            rides out transient file-system errors.

    Returns:
        uint8 tensor (3, H, W) (see :func:`decode_rgb`).

    Raises:
        UserError: naming the file, after the last failed attempt, with the fix of the dataset
            whose layout holds the file (:func:`data.datasets.frame_fix`); at once for a PIL
            mode without a defined RGB decoding, naming the mode.
    """
    error: Exception | None = None
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(0.05 * attempt)
        try:
            return _decode_file(path)
        except FrameModeError as e:
            raise UserError(f"Image '{path}' is not read: {e}. Fix: {MODE_FIX}.") from None
        except OSError as e:
            error = e
    raise UserError(f"Cannot read image '{path}' after {max(1, retries)} attempt(s): {error}. "
                    f"Fix: {frame_fix(path)}.")


Frame = torch.Tensor | Image.Image


def _hwc(frame: Frame, h: int, w: int) -> torch.Tensor:
    """uint8 (h, w, 3) pixels of one frame (the decoders' memory layout, no copy), resized with
    PIL (bilinear, as torchvision's Resize on PIL images) where its size differs. A PIL frame
    of any mode becomes RGB first (:func:`pil_rgb`)."""
    hwc = (frame.permute(1, 2, 0) if isinstance(frame, torch.Tensor)
           else torch.from_numpy(pil_rgb(frame)))
    if tuple(hwc.shape[:2]) == (h, w):
        return hwc
    resized = Image.fromarray(hwc.numpy()).resize((w, h), Image.BILINEAR)
    return torch.from_numpy(np.array(resized))


def _uniform(n: int, generator: torch.Generator, consistent: bool, *extra: int) -> np.ndarray:
    """Uniform [0, 1) float32 draws (n, *extra); with ``consistent`` one draw repeated over n."""
    draws = torch.rand((1 if consistent else n, *extra), generator=generator).numpy()
    return np.broadcast_to(draws, (n, *extra)) if consistent else draws


def _shifted_spans(offset: int, padding: int, size: int) -> tuple[slice, slice]:
    """(output, input) spans of a crop at ``offset`` of the input zero-padded by ``padding``."""
    shift = offset - padding                                    # in [-padding, padding]
    return (slice(max(0, -shift), size - max(0, shift)),
            slice(max(0, shift), size + min(0, shift)))


def _paste(out: np.ndarray, frame: torch.Tensor, flip: bool, top: int, left: int,
           padding: int) -> None:
    """Write ``frame`` (H, W, C), flipped, zero-padded by ``padding`` and cropped at
    (``top``, ``left``), into ``out`` (H, W, C): one (converting) copy of the overlap and
    zeros in the uncovered bands (numpy assignments: the same copies as torch's, cheaper calls;
    torch flips, which numpy would copy element by element)."""
    h, w = frame.shape[:2]
    (rows_out, rows_in), (cols_out, cols_in) = (_shifted_spans(top, padding, h),
                                                _shifted_spans(left, padding, w))
    if flip:   # the flipped frame's columns cols_in are the frame's mirrored ones, reversed
        out[rows_out, cols_out] = frame[rows_in, w - cols_in.stop:w - cols_in.start].flip(1).numpy()
    else:
        out[rows_out, cols_out] = frame.numpy()[rows_in, cols_in]
    if rows_out.start:
        out[:rows_out.start] = 0
    if rows_out.stop < h:
        out[rows_out.stop:] = 0
    if cols_out.start:
        out[rows_out, :cols_out.start] = 0
    if cols_out.stop < w:
        out[rows_out, cols_out.stop:] = 0


def random_hflip_pad_crop(frames: Sequence[torch.Tensor] | torch.Tensor, flip_prob: float,
                          padding: int, generator: torch.Generator, consistent: bool = False,
                          out: torch.Tensor | None = None) -> torch.Tensor:
    """RandomHorizontalFlip, then Pad + RandomCrop back to the input size, in one copy a frame.

    A frame is flipped with probability ``flip_prob``; then, as torchvision's Pad + RandomCrop,
    it is zero-padded by ``padding`` pixels and cropped at an offset uniform in
    ``[0, 2 * padding]`` on each axis. The draws (flips, then offsets) are made per frame, or
    once for the clip with ``consistent``. The padded frame is never built: the overlap of the
    crop with the (flipped) frame is copied, the rest of the output zeroed.

    Args:
        frames: T frames (H, W, C), channels last (a (T, H, W, C) tensor or a sequence).
        flip_prob: flip probability (INPUT.PROB).
        padding: INPUT.PADDING (0: no pad and crop, nothing drawn for it).
        generator: source of the draws.
        consistent: one draw for all frames.
        out: (T, H, W, C) destination of any dtype (uint8 values are converted on the copy);
            default a new tensor of the frames' dtype.

    Returns:
        ``out``, (T, H, W, C).
    """
    t = len(frames)
    h, w, c = frames[0].shape
    flips = (_uniform(t, generator, consistent) < flip_prob).tolist()             # (T,)
    if padding > 0:
        offsets = (_uniform(t, generator, consistent, 2) * (2 * padding + 1)).astype(np.int64)
    else:
        offsets = np.zeros((t, 2), dtype=np.int64)          # no crop: offset 0, no padding
    if out is None:
        out = torch.empty((t, h, w, c), dtype=frames[0].dtype)
    dest = out.numpy()
    for k, (flip, (i, j)) in enumerate(zip(flips, offsets.tolist(), strict=True)):
        _paste(dest[k], frames[k], flip, i, j, padding)
    return out


def random_erasing(x: torch.Tensor, prob: float, value: Sequence[float] | torch.Tensor,
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
        x: (T, C, H, W) normalised frames on the CPU, any memory layout.
        prob: erasing probability (INPUT.RE_PROB).
        value: fill value per channel (C,), or a whole (C, H, W) frame of them (built once
            by the caller, ideally in ``x``'s memory layout, so that a rectangle is a copy of
            the same rectangle of it).
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
    apply = (_uniform(t, generator, consistent) < prob).tolist()                # (T,)
    u = _uniform(t, generator, consistent, attempts, 2)                         # (T, A, 2)
    corner = _uniform(t, generator, consistent, 2)                              # (T, 2)
    out = x
    fill = None
    for k in range(1 if consistent else t):
        box = _erasing_box(u[k], corner[k], h, w, area, min_aspect) if apply[k] else None
        if box is None:
            continue
        if out is x and not inplace:
            out = x.clone()
        if fill is None:
            fill = (value if isinstance(value, torch.Tensor) and value.dim() == 3
                    else torch.as_tensor(value, dtype=x.dtype).view(c, 1, 1).expand(c, h, w))
            dest, fill = out.numpy(), fill.numpy()        # numpy: cheaper calls, same copy
        top, left, eh, ew = box
        frames = slice(None) if consistent else k      # a rectangle is a view: fill in place
        rows, cols = slice(top, top + eh), slice(left, left + ew)
        dest[frames, :, rows, cols] = fill[:, rows, cols]
    return out


def _erasing_box(u: np.ndarray, corner: np.ndarray, h: int, w: int,
                 area: tuple[float, float], min_aspect: float) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of one frame's rectangle from its draws, or None if none fits.

    ``u`` (A, 2) float32: area and aspect draws of the A attempts; ``corner`` (2,) float32.
    Sizes are computed in float64 and the corner as float32 products (torch's promotion of
    float32 draws), so the draws give the rectangles of the earlier vectorised version.
    """
    for area_u, aspect_u in zip(u[:, 0].tolist(), u[:, 1].tolist(), strict=True):
        target = (area[0] + (area[1] - area[0]) * area_u) * (h * w)
        aspect = min_aspect + (1.0 / min_aspect - min_aspect) * aspect_u
        eh, ew = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if eh < h and ew < w:
            top = int(corner[0] * np.float32(h - eh + 1))                 # float32 product
            left = int(corner[1] * np.float32(w - ew + 1))
            return top, left, eh, ew
    return None


class ClipTransform:
    """Resize, (augment,) convert and normalise the frames of a clip.

    Clips are float32 (T, 3, H, W) whose memory is channels last, (T, H, W, 3): the decoders'
    layout, so that no pixel is transposed on the way (the model's first layer takes either
    layout; ``.contiguous()`` gives the other one). :meth:`write` fills a slot of a batch
    in place, which is how the training loader builds its batches without a collate copy.

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
        # ToTensor + Normalize as one affine map of the uint8 values, x / (255 std) - mean / std,
        # repeated along a row of W pixels x 3 channels (the inner dimension of the memory)
        mean64 = torch.tensor(self.mean, dtype=torch.float64)
        std64 = torch.tensor(self.std, dtype=torch.float64)
        width = self.size[1]
        self._scale = (1.0 / (255.0 * std64)).float().repeat(width)               # (W * 3,)
        self._shift = (-mean64 / std64).float().repeat(width)                     # (W * 3,)
        # the random-erasing fill (PIXEL_MEAN, on the normalised values): one frame of it,
        # channels last as the clips, (3, H, W)
        self._fill = (torch.tensor(self.mean).repeat(self.size[0], width)
                      .view(*self.size, 3).permute(2, 0, 1))

    def new_clips(self, n: int, t: int) -> torch.Tensor:
        """Uninitialised float32 storage for ``n`` clips of ``t`` frames, (n, t, H, W, 3); in
        a loader worker in shared memory, so that the batch reaches the main process without
        a copy (as torch's default collate does)."""
        shape = (n, t, *self.size, 3)
        if get_worker_info() is None:
            return torch.empty(shape, dtype=torch.float32)
        storage = torch.empty(0)._typed_storage()._new_shared(math.prod(shape))
        return torch.empty(0).set_(storage).view(shape)

    def write(self, images: Sequence[Frame], out: torch.Tensor,
              generator: torch.Generator | None = None) -> None:
        """Transform T frames into ``out``.

        Args:
            images: T RGB frames, uint8 tensors (3, H, W) (:func:`read_image`) or PIL images.
            out: float32 (T, H, W, 3) destination, contiguous (a slot of :meth:`new_clips`).
            generator: source of the random draws (required when training).
        """
        frames = [_hwc(f, *self.size) for f in images]                # uint8 (H, W, 3) each
        if self.train:
            if generator is None:
                raise ValueError("a training transform needs a torch.Generator")
            random_hflip_pad_crop(frames, self.flip_prob, self.padding, generator,
                                  self.clip_consistent, out=out)
        else:
            for k, frame in enumerate(frames):
                out[k] = frame
        rows = out.view(len(frames), self.size[0], -1)                # (T, H, W * 3)
        torch.addcmul(self._shift, rows, self._scale, out=rows)       # ToTensor + Normalize
        if self.train and self.erase_prob > 0:
            random_erasing(out.permute(0, 3, 1, 2), self.erase_prob, self._fill, generator,
                           self.clip_consistent, inplace=True)

    def __call__(self, images: Sequence[Frame],
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform T frames.

        Args:
            images: T RGB frames, uint8 tensors (3, H, W) (:func:`read_image`) or PIL images.
            generator: source of the random draws (required when training).

        Returns:
            float32 tensor (T, 3, H, W), normalised, channels-last memory.
        """
        out = self.new_clips(1, len(images))[0]
        self.write(images, out, generator)
        return out.permute(0, 3, 1, 2)

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

