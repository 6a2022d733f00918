"""Torch datasets over tracklets: one augmented clip per training sample, all clips per test item.

Training items are addressed by ``(index, sample_seed)`` pairs (see data/samplers.py): the
seed drives the clip sampling and every augmentation draw through one ``torch.Generator``, so
a sample is a pure function of the pair. Test items are addressed by tracklet index.

Frame order (DATASETS.SHUFFLE_FRAMES): the original shuffles every tracklet's frame
list once at load time; here tracklet ``i`` of stream ``s`` (0 train, 1 query, 2 gallery)
uses the permutation drawn from ``(seed, s, i)``, the same in every process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from data.attributes import encode_attributes
from data.datasets.base import Tracklet
from data.sampling import TEST_SAMPLERS, TRAIN_SAMPLERS, frame_order
from data.transforms import ClipTransform, read_image

__all__ = ["STREAMS", "VideoTestDataset", "VideoTrainDataset", "collate_batch"]

# Seed streams of the frame orders and test-time draws.
STREAMS = {"train": 0, "query": 1, "gallery": 2}

ClipFn = Callable[..., torch.Tensor]


def _attribute_indices(tracklets: Sequence[Tracklet]) -> torch.Tensor:
    """LongTensor (N, n_attr) of the tracklets' attribute class indices (-1 unknown)."""
    n_attr = len(tracklets[0][3]) if tracklets else 0
    return torch.tensor([t[3] for t in tracklets], dtype=torch.long).reshape(len(tracklets),
                                                                               n_attr)


class _TrackletFrames(Dataset):
    """Shared part: frame order and the reading of selected frames."""

    def __init__(self, tracklets: Sequence[Tracklet], seq_len: int, transform: ClipFn,
                 shuffle_frames: bool, seed: int, stream: int, read_retries: int) -> None:
        if not tracklets:
            raise ValueError("no tracklets")
        self.tracklets = list(tracklets)
        self.seq_len = seq_len
        self.transform = transform
        self.shuffle_frames = shuffle_frames
        self.seed = seed
        self.stream = stream
        self.read_retries = read_retries
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.tracklets)

    def _order(self, index: int) -> np.ndarray:
        """Tracklet ``index``'s frame order (drawn once per process, then kept)."""
        order = self._orders.get(index)
        if order is None:
            seed = [self.seed, self.stream, index] if self.shuffle_frames else None
            order = self._orders[index] = frame_order(len(self.tracklets[index][0]), seed)
        return order

    def _decoded(self, index: int, positions: np.ndarray
                 ) -> tuple[list[torch.Tensor], np.ndarray]:
        """Distinct frames of ``positions`` (uint8 (3, H, W) each, see
        :func:`data.transforms.read_image`) and the index of each position among them."""
        paths = self.tracklets[index][0]
        frames = self._order(index)[positions].ravel().tolist()
        slots: dict[int, int] = {}                  # frame -> its index among the distinct
        inverse = np.array([slots.setdefault(f, len(slots)) for f in frames], dtype=np.int64)
        images = [read_image(paths[f], self.read_retries) for f in slots]
        return images, inverse.reshape(positions.shape)


class VideoTrainDataset(_TrackletFrames):
    """Training clips: ``dataset[(index, sample_seed)] -> (clip, pid, camid, attrs)``.

    A batch of items is built in one piece by :meth:`__getitems__` (the DataLoader calls it
    with the batch sampler's items; :func:`collate_batch` passes its result on): each clip is
    written into its slot of the batch, with no per-item tensors to stack.

    Args:
        tracklets: :class:`data.datasets.Tracklet` (or any tuple that begins ``img_paths, pid,
            camid, attributes``), pids relabelled.
        seq_len: clip length T.
        transform: a training :class:`data.transforms.ClipTransform` (``new_clips`` and
            ``write(images, out, generator)``).
        sample_method: a name of :data:`data.sampling.TRAIN_SAMPLERS`: "random" (T
            consecutive frames, random start) or "evenly".
        attr_mode: "bce", "mce" or "none" (see :func:`data.attributes.encode_attributes`).
        attr_lens: class counts per attribute group (None: no attributes).
        shuffle_frames: shuffle each tracklet's frame order (seeded).
        seed: RANDOM_SEED (frame orders).
        read_retries: attempts per image.

    Returns per item:
        clip FloatTensor (T, 3, H, W), pid int, camid int, attrs: "bce" a list of FloatTensor
        (sum(group lens),) per group, "mce" LongTensor (n_attr,), "none" LongTensor (0,).
    """

    def __init__(self, tracklets: Sequence[Tracklet], seq_len: int, transform: ClipTransform,
                 sample_method: str = "random", attr_mode: str = "none",
                 attr_lens: Sequence[Sequence[int]] | None = None, shuffle_frames: bool = True,
                 seed: int = 0, read_retries: int = 3) -> None:
        super().__init__(tracklets, seq_len, transform, shuffle_frames, seed, STREAMS["train"],
                         read_retries)
        self.sample_clip = TRAIN_SAMPLERS.get(sample_method)
        self.sample_method = sample_method
        encoded = encode_attributes(_attribute_indices(self.tracklets), attr_lens, attr_mode)
        self.attrs = encoded                      # list of (N, w) per group, or (N, n_attr)
        self._ids = torch.tensor([t[1:3] for t in self.tracklets], dtype=torch.long)  # (N, 2)

    @staticmethod
    def _pair(item) -> tuple[int, int]:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError("VideoTrainDataset items are (index, sample_seed) pairs; use a "
                            "sampler of data.samplers")
        return int(item[0]), int(item[1])

    def _write_clip(self, index: int, sample_seed: int, out: torch.Tensor) -> None:
        """Sample and transform one clip of tracklet ``index`` into ``out`` (T, H, W, 3)."""
        generator = torch.Generator().manual_seed(sample_seed)
        positions = self.sample_clip(len(self.tracklets[index][0]), self.seq_len, generator)
        images, inverse = self._decoded(index, positions)
        self.transform.write([images[i] for i in inverse.tolist()], out, generator)

    def __getitems__(self, items: Sequence[tuple[int, int]]):
        """A batch: ``(clips (B, T, 3, H, W), pids (B,), camids (B,), attrs)``, attrs as
        :func:`data.make_data_loaders` describes (the items' rows, stacked). The clips'
        memory is channels last, (B, T, H, W, 3)."""
        pairs = [self._pair(item) for item in items]
        clips = self.transform.new_clips(len(pairs), self.seq_len)         # (B, T, H, W, 3)
        for slot, (index, sample_seed) in zip(clips, pairs, strict=True):
            self._write_clip(index, sample_seed, slot)
        rows = torch.tensor([index for index, _ in pairs], dtype=torch.long)
        ids = self._ids[rows]
        return clips.permute(0, 1, 4, 2, 3), ids[:, 0], ids[:, 1], self._attrs_at(rows)

    def __getitem__(self, item: tuple[int, int]):
        index, sample_seed = self._pair(item)
        pid, camid = self.tracklets[index][1:3]
        clip = self.transform.new_clips(1, self.seq_len)[0]                 # (T, H, W, 3)
        self._write_clip(index, sample_seed, clip)
        return clip.permute(0, 3, 1, 2), pid, camid, self._attrs_at(index)

    def _attrs_at(self, rows: int | torch.Tensor):
        """The encoded attributes of tracklet(s) ``rows``: per group for "bce", else one tensor."""
        return [a[rows] for a in self.attrs] if isinstance(self.attrs, list) else self.attrs[rows]


def collate_batch(batch):
    """The train loader's ``collate_fn``: :meth:`VideoTrainDataset.__getitems__` already
    returns the collated batch."""
    return batch


class VideoTestDataset(_TrackletFrames):
    """Test tracklets: ``dataset[index] -> (clips, pid, camid, attr_idx)``.

    Args:
        tracklets: :class:`data.datasets.Tracklet` (or any tuple that begins ``img_paths, pid,
            camid, attributes``).
        seq_len: clip length T.
        transform: ``transform(images) -> (n, 3, H, W)``, e.g. a test
            :class:`data.transforms.ClipTransform`.
        sample_method: a name of :data:`data.sampling.TEST_SAMPLERS`: "dense" (all clips, at
            most ``max_clips``), "evenly" or "random" (one clip each).
        max_clips: most dense clips per tracklet (DATASETS.TEST_MAX_SEQ_NUM).
        shuffle_frames: shuffle each tracklet's frame order (seeded).
        seed: RANDOM_SEED (frame orders, dense windows, random clips).
        stream: seed stream, :data:`STREAMS` ``["query"]`` or ``["gallery"]``.
        read_retries: attempts per image.

    Returns per item:
        clips FloatTensor (N, T, 3, H, W), pid int, camid int, attr_idx LongTensor (n_attr,)
        (-1 where unknown).
    """

    def __init__(self, tracklets: Sequence[Tracklet], seq_len: int, transform: ClipFn,
                 sample_method: str = "dense", max_clips: int = 200, shuffle_frames: bool = True,
                 seed: int = 0, stream: int = STREAMS["query"], read_retries: int = 3) -> None:
        super().__init__(tracklets, seq_len, transform, shuffle_frames, seed, stream,
                         read_retries)
        self.sample_clips = TEST_SAMPLERS.get(sample_method)
        self.sample_method = sample_method
        self.max_clips = max_clips
        self.attr_idx = _attribute_indices(self.tracklets)                      # (N, n_attr)

    def clip_positions(self, index: int) -> np.ndarray:
        """Positions in tracklet ``index``'s frame order of its clips, (N, T)."""
        return self.sample_clips(len(self.tracklets[index][0]), self.seq_len, self.max_clips,
                                 (self.seed, self.stream, index))

    def __getitem__(self, index: int):
        pid, camid = self.tracklets[index][1:3]
        positions = self.clip_positions(index)                                  # (N, T)
        images, inverse = self._decoded(index, positions)
        frames = self.transform(images)                                         # (U, 3, H, W)
        clips = frames[torch.from_numpy(inverse)]                               # (N, T, 3, H, W)
        return clips, pid, camid, self.attr_idx[index].clone()
