"""Config adapters: the dataset and the train / query / gallery loaders of a config."""

from __future__ import annotations

import atexit
import logging
import signal
import weakref
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from config import attributes_on
from data.datasets import DATASETS, Tracklet, VideoReIDDataset
from data.datasets.base import find_missing_files
from data.samplers import RandomBatchSampler, RandomIdentitySampler
from data.transforms import build_transforms
from data.video_dataset import STREAMS, VideoTestDataset, VideoTrainDataset, collate_batch
from utils.comm import get_rank, get_world_size
from utils.errors import UserError

__all__ = ["attribute_mode", "build_dataset", "check_image_files", "make_data_loaders",
           "make_test_loader"]

logger = logging.getLogger("reid.data")

IDENTITY_SAMPLERS = ("triplet", "softmax_triplet")


def build_dataset(cfg: CfgNode) -> VideoReIDDataset:
    """Parse the dataset DATASETS.NAME at DATASETS.ROOT_DIR.

    A dataset with attributes (its class has an ``attribute_file``: MARS, DukeMTMC-VideoReID
    and the folder dataset) reads its attribute files when ATTR_RECOG_ON is True (without
    it, ``attr_lens`` is None and no attribute file is needed).

    Nothing is written: the commands write the synthetic dataset of DATASETS.SYNTHETIC into a
    missing root first (``tools.synthetic.ensure_dataset``, with DATASETS.SYNTHETIC.IF_MISSING).

    Raises:
        UserError: empty or missing root, missing files (all listed), malformed annotations.
    """
    name, root = cfg.DATASETS.NAME, cfg.DATASETS.ROOT_DIR
    dataset_class = DATASETS.get(name)      # an unknown name: UserError listing the datasets
    if not root:
        raise UserError("DATASETS.ROOT_DIR is empty: set it to the dataset folder, e.g. "
                        "DATASETS.ROOT_DIR data/mars.")
    return dataset_class(root, attributes=cfg.ATTR_RECOG_ON)


def attribute_mode(cfg: CfgNode, dataset: VideoReIDDataset) -> str:
    """The attribute target encoding: DATASETS.ATTRIBUTE_LOSS, or "none" without attributes."""
    if not attributes_on(cfg, dataset.attr_lens):
        return "none"
    return cfg.DATASETS.ATTRIBUTE_LOSS


def check_image_files(dataset: VideoReIDDataset, shown: int = 10) -> None:
    """Raise before training when image files of the split are missing.

    Only existence is checked (one listing per folder, see
    :func:`data.datasets.base.find_missing_files`); a
    truncated or corrupt image is named when it is read, and ``python -m tools.verify``
    decodes every image up front.

    Args:
        dataset: the parsed dataset.
        shown: how many missing paths the message lists.

    Raises:
        UserError: listing the first ``shown`` missing files and their count.
    """
    paths = [p for subset in (dataset.train, dataset.query, dataset.gallery)
             for t in subset for p in t.img_paths]
    missing = find_missing_files(paths)
    if missing:
        listed = "\n".join(f"  - {p}" for p in missing[:shown])
        more = f"\n  ... and {len(missing) - shown} more" if len(missing) > shown else ""
        raise UserError(f"{len(missing)} of the {len(paths)} image files of the split are "
                        f"missing:\n{listed}{more}\nFix: {type(dataset).frames_fix()}; `python "
                        "-m tools.verify --config_file FILE` lists every problem of the dataset "
                        "folder.")


def _worker_init(worker_id: int) -> None:
    # One intra-op thread per worker: the workers already run in parallel. No seeding is
    # needed: every random draw of the data code comes from per-sample seeds.
    torch.set_num_threads(1)
    # Ctrl-C reaches every process of the terminal's group: the workers ignore it (and
    # SIGTERM) and the main process stops them, after its interruption checkpoint (a worker
    # killed by the signal would make the next batch fail with "worker exited unexpectedly").
    # A worker whose main process is gone exits on its own (torch's watchdog); at the main
    # process's exit, _stop_workers asks them to finish (SIGTERM no longer would).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


# The loaders with persistent workers of this process. Their workers ignore SIGTERM, the
# signal multiprocessing's exit handler stops its remaining children with before it waits for
# them; a loader still referenced at exit (a reference cycle not yet collected) would make the
# process wait forever. _stop_workers shuts them down the way torch does when a loader is
# deleted. It runs before multiprocessing's handler: exit handlers run last-registered first,
# and importing torch (above) has registered that one already.
_LOADERS: weakref.WeakSet[DataLoader] = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    for loader in list(_LOADERS):
        workers = getattr(loader, "_iterator", None)
        if workers is not None:
            workers._shutdown_workers()
            loader._iterator = None


def _tracked(loader: DataLoader) -> DataLoader:
    """``loader``, its persistent workers shut down at exit (see :func:`_stop_workers`)."""
    if loader.num_workers > 0:
        _LOADERS.add(loader)
    return loader


def _loader_options(cfg: CfgNode) -> tuple[dict, dict]:
    """(DataLoader keyword arguments, dataset keyword arguments shared by all loaders)."""
    seed = cfg.RANDOM_SEED
    if seed < 0:
        raise UserError(f"RANDOM_SEED must be >= 0 (it seeds numpy generators); got {seed}.")
    workers = cfg.DATALOADER.NUM_WORKERS
    common = dict(num_workers=workers, persistent_workers=workers > 0,
                  pin_memory=cfg.MODEL.DEVICE == "cuda" and torch.cuda.is_available(),
                  worker_init_fn=_worker_init if workers > 0 else None)
    shared = dict(seq_len=cfg.DATASETS.SEQ_LEN, shuffle_frames=cfg.DATASETS.SHUFFLE_FRAMES,
                  seed=seed, read_retries=cfg.DATALOADER.READ_RETRIES)
    return common, shared


def make_test_loader(cfg: CfgNode, tracklets: Sequence[Tracklet], stream: str) -> DataLoader:
    """The evaluation loader of some tracklets: one item per tracklet, every dense clip.

    The loaders of :func:`make_data_loaders` come from here, so the same tracklets and
    ``stream`` give the same clips (frame order, dense windows) as evaluation.

    Args:
        cfg: the config (DATASETS.*, INPUT.SIZE_TEST, DATALOADER.*, RANDOM_SEED).
        tracklets: the tracklets, e.g. ``dataset.query``.
        stream: the seed stream, a key of :data:`data.video_dataset.STREAMS` ("query",
            "gallery" or "train").

    Returns:
        A DataLoader of ``(clips (N, T, 3, H, W), pid, camid, attr_idx (n_attr,))`` items.
    """
    common, shared = _loader_options(cfg)
    test_set = VideoTestDataset(tracklets, transform=build_transforms(cfg, is_train=False),
                                sample_method=cfg.DATASETS.TEST_SAMPLE_METHOD,
                                max_clips=cfg.DATASETS.TEST_MAX_SEQ_NUM, stream=STREAMS[stream],
                                **shared)
    return _tracked(DataLoader(test_set, batch_size=None, shuffle=False,
                               generator=torch.Generator().manual_seed(cfg.RANDOM_SEED),
                               **common))


def make_data_loaders(cfg: CfgNode, dataset: VideoReIDDataset | None = None
                      ) -> tuple[DataLoader, DataLoader, DataLoader, VideoReIDDataset]:
    """Train, query and gallery loaders of the config, and the dataset.

    Train: batches of SOLVER.SEQS_PER_BATCH (per process: divided by the world size) from a
    :class:`RandomIdentitySampler` (SAMPLER "triplet"/"softmax_triplet") or a
    :class:`RandomBatchSampler` ("softmax"), drop_last; items
    ``(clips (B, T, 3, H, W), pids (B,), camids (B,), attrs)``, clips float32 whose memory is
    channels last, (B, T, H, W, 3) (``.contiguous()`` gives the other layout; built in place
    by :meth:`VideoTrainDataset.__getitems__`), attrs a list of two
    (B, width) float tensors ("bce"), a (B, n_attr) LongTensor ("mce") or an empty (B, 0)
    LongTensor. Call ``train_loader.batch_sampler.set_epoch(e)`` before each epoch.
    Query / gallery: one tracklet per item ``(clips (N, T, 3, H, W), pid, camid, attr_idx)``,
    not split across processes.

    Args:
        cfg: the config.
        dataset: an already parsed dataset (default: :func:`build_dataset`).

    Raises:
        UserError: dataset errors, missing image files (see :func:`check_image_files`); a
            batch that cannot be formed (see the samplers).
    """
    if dataset is None:
        dataset = build_dataset(cfg)
    check_image_files(dataset)
    world, rank = get_world_size(), get_rank()
    common, shared = _loader_options(cfg)
    seed = cfg.RANDOM_SEED
    batch = cfg.SOLVER.SEQS_PER_BATCH
    if cfg.DATALOADER.SAMPLER in IDENTITY_SAMPLERS:
        batch_sampler = RandomIdentitySampler([t.pid for t in dataset.train], batch,
                                              cfg.DATALOADER.NUM_INSTANCE, seed, world, rank)
    else:
        batch_sampler = RandomBatchSampler(len(dataset.train), batch, seed, world, rank)
    train_set = VideoTrainDataset(
        dataset.train, transform=build_transforms(cfg, is_train=True),
        sample_method=cfg.DATASETS.TRAIN_SAMPLE_METHOD, attr_mode=attribute_mode(cfg, dataset),
        attr_lens=dataset.attr_lens, **shared)
    # A private generator: creating loader iterators never touches the global RNG.
    train_loader = _tracked(DataLoader(train_set, batch_sampler=batch_sampler,
                                       collate_fn=collate_batch,
                                       generator=torch.Generator().manual_seed(seed), **common))
    query_loader = make_test_loader(cfg, dataset.query, "query")
    gallery_loader = make_test_loader(cfg, dataset.gallery, "gallery")
    logger.info("Train loader: %d batches of %d tracklets per epoch%s (%s sampler, %d "
                "workers); test: %d query and %d gallery tracklets, %s clips.",
                len(batch_sampler), batch_sampler.per_rank,
                f" per process ({world} processes)" if world > 1 else "",
                cfg.DATALOADER.SAMPLER, common["num_workers"], len(dataset.query),
                len(dataset.gallery),
                cfg.DATASETS.TEST_SAMPLE_METHOD)
    return train_loader, query_loader, gallery_loader, dataset
