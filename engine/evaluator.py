"""Dense feature extraction and the evaluation protocol (SPEC §6).

Every dense clip of every tracklet goes through the model in eval mode; clips of several
tracklets are packed into one forward of up to ``clips_per_batch`` clips, and the clip features
of a tracklet are pooled ("avg" or "max", the same for query and gallery).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn as nn

from utils.metrics import attribute_metrics, compute_distance_matrix, evaluate_rank
from utils.reranking import re_ranking

logger = logging.getLogger("reid.eval")


def _flat_attr_logits(attr_logits) -> torch.Tensor | None:
    """Concatenate attribute logits into (B, sum of all class counts), CSV attribute order.

    Both "bce" (one tensor per group) and "mce" (one tensor per attribute) outputs are laid out
    attribute after attribute, so the same slicing decodes them.
    """
    if attr_logits is None:
        return None
    return torch.cat([a.float() for a in attr_logits], dim=1)


AUTO_CLIPS_PER_BATCH = {"cuda": 128, "cpu": 2}


def clips_per_batch(cfg, device: torch.device) -> int:
    """TEST.CLIPS_PER_BATCH, or for 0 (auto) the device's default.

    On a GPU large forwards fill the device; on a CPU the paper model is fastest with forwards
    of 1-2 clips (8 frames of 256x128 keep the activations in cache): 5.2 clips/s at 2 clips
    against 2.9 at 128 and 3.4 for the original's one-tracklet-per-forward on a 2-core CPU
    (``python -m utils.benchmark extract``).
    """
    n = cfg.TEST.CLIPS_PER_BATCH
    return n if n > 0 else AUTO_CLIPS_PER_BATCH.get(device.type, 128)


@torch.no_grad()
def extract_features(model: nn.Module, loader: Iterable, device: torch.device,
                     clips_per_batch: int = 128, pool: str = "avg",
                     amp_dtype: torch.dtype | None = None) -> dict:
    """Features of every tracklet of ``loader`` (one item per tracklet).

    Args:
        model: the VideoBaseline (eval mode is set here); eval forward -> (feat, attr_logits).
        loader: sized iterable yielding ``(clips (N, T, 3, H, W), pid, camid, attr_idx (n_attr,))``
            per tracklet (a DataLoader with ``batch_size=None`` or a list).
        device: device of the forward passes.
        clips_per_batch: most clips in one forward; clips of several tracklets are packed.
        pool: "avg" (mean of the clip features) or "max" (element-wise max).
        amp_dtype: autocast dtype on CUDA (None for float32).

    Returns:
        dict with ``feats`` (M, D) float32 on ``device``, ``pids``/``camids`` (M,) int64 numpy,
        ``attr_logits`` (M, sum of class counts) float32 or None (clip logits averaged),
        ``attr_targets`` (M, n_attr) int64 numpy (-1 unknown), ``num_clips`` (int).
    """
    model.eval()
    num = len(loader)  # one item per tracklet
    pids, camids, targets = [], [], []
    feats = attr_sum = counts = None
    pending: list[torch.Tensor] = []   # clip tensors waiting for a forward
    owners: list[torch.Tensor] = []    # tracklet index of every pending clip
    n_pending = 0
    total_clips = 0
    autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype)
                if amp_dtype is not None and device.type == "cuda" else contextlib.nullcontext())

    def forward(clips: torch.Tensor, owner: torch.Tensor) -> None:
        nonlocal feats, attr_sum, counts
        clips = clips.to(device, non_blocking=True)
        owner = owner.to(device)
        with autocast:
            f, attr = model(clips)
        f = f.float()                                   # (c, D)
        a = _flat_attr_logits(attr)                     # (c, L) or None
        if feats is None:
            fill = float("-inf") if pool == "max" else 0.0
            feats = torch.full((num, f.shape[1]), fill, device=device)
            counts = torch.zeros(num, device=device)
            if a is not None:
                attr_sum = torch.zeros(num, a.shape[1], device=device)
        if pool == "max":
            idx = owner[:, None].expand_as(f)
            feats.scatter_reduce_(0, idx, f, reduce="amax")
        else:
            feats.index_add_(0, owner, f)
        counts.index_add_(0, owner, torch.ones_like(owner, dtype=counts.dtype))
        if a is not None:
            attr_sum.index_add_(0, owner, a)

    def flush(final: bool) -> None:
        nonlocal pending, owners, n_pending
        if not pending:
            return
        clips = torch.cat(pending)
        owner = torch.cat(owners)
        start = 0
        while clips.shape[0] - start >= clips_per_batch or (final and start < clips.shape[0]):
            end = min(start + clips_per_batch, clips.shape[0])
            forward(clips[start:end], owner[start:end])
            start = end
        pending = [clips[start:]] if start < clips.shape[0] else []
        owners = [owner[start:]] if start < clips.shape[0] else []
        n_pending = clips.shape[0] - start

    for i, (clips, pid, camid, attr_idx) in enumerate(loader):
        pids.append(int(pid))
        camids.append(int(camid))
        targets.append(torch.as_tensor(attr_idx, dtype=torch.long))
        pending.append(clips)
        owners.append(torch.full((clips.shape[0],), i, dtype=torch.long))
        n_pending += clips.shape[0]
        total_clips += clips.shape[0]
        if n_pending >= clips_per_batch:
            flush(final=False)
    flush(final=True)

    m = len(pids)
    feats, counts = feats[:m], counts[:m]
    if pool == "avg":
        feats = feats / counts[:, None]
    attr_logits = attr_sum[:m] / counts[:, None] if attr_sum is not None else None
    return {
        "feats": feats,
        "pids": np.asarray(pids, dtype=np.int64),
        "camids": np.asarray(camids, dtype=np.int64),
        "attr_logits": attr_logits,
        "attr_targets": torch.stack(targets).numpy() if targets else np.zeros((0, 0), np.int64),
        "num_clips": total_clips,
    }


def decode_flat_attr_logits(logits: torch.Tensor, attr_lens_flat: list[int]) -> np.ndarray:
    """Argmax of each attribute's slice of (M, sum(attr_lens_flat)) logits -> (M, n_attr)."""
    parts = torch.split(logits, list(attr_lens_flat), dim=1)
    return torch.stack([p.argmax(dim=1) for p in parts], dim=1).cpu().numpy()


@torch.no_grad()
def evaluate(model: nn.Module, query_loader: Iterable, gallery_loader: Iterable,
             device: torch.device, *, metric: str = "cosine", feat_norm: bool = True,
             re_rank: bool = False, clips_per_batch: int = 128, pool: str = "avg",
             amp_dtype: torch.dtype | None = None, attr_lens: list[list[int]] | None = None,
             attr_names: list[str] | None = None, max_rank: int = 50) -> dict:
    """Extract query and gallery features, rank, and compute CMC/mAP and attribute metrics.

    Returns:
        dict with ``R1, R5, R10, R20, mAP`` (fractions), ``cmc`` (np.ndarray), ``seconds``,
        ``clips_per_s``, and, with attributes, ``attr`` (see utils.metrics.attribute_metrics).
    """
    t0 = time.perf_counter()
    q = extract_features(model, query_loader, device, clips_per_batch, pool, amp_dtype)
    g = extract_features(model, gallery_loader, device, clips_per_batch, pool, amp_dtype)
    t_extract = time.perf_counter() - t0
    qf, gf = q["feats"], g["feats"]
    if feat_norm:
        qf = torch.nn.functional.normalize(qf, dim=1)
        gf = torch.nn.functional.normalize(gf, dim=1)
    distmat = compute_distance_matrix(qf, gf, metric)
    if re_rank:
        distmat = torch.as_tensor(re_ranking(
            distmat.cpu().numpy(), compute_distance_matrix(qf, qf, metric).cpu().numpy(),
            compute_distance_matrix(gf, gf, metric).cpu().numpy()))
    distmat = distmat.cpu().numpy() if torch.is_tensor(distmat) else np.asarray(distmat)
    cmc, mAP = evaluate_rank(distmat, q["pids"], g["pids"], q["camids"], g["camids"], max_rank)
    n_clips = q["num_clips"] + g["num_clips"]
    results = {"R1": float(cmc[0]), "R5": float(cmc[min(4, len(cmc) - 1)]),
               "R10": float(cmc[min(9, len(cmc) - 1)]), "R20": float(cmc[min(19, len(cmc) - 1)]),
               "mAP": float(mAP), "cmc": cmc, "seconds": time.perf_counter() - t0,
               "clips_per_s": n_clips / max(t_extract, 1e-9)}
    if attr_lens is not None and q["attr_logits"] is not None:
        flat = [n for group in attr_lens for n in group]
        logits = torch.cat([q["attr_logits"], g["attr_logits"]])
        targets = np.concatenate([q["attr_targets"], g["attr_targets"]])
        preds = decode_flat_attr_logits(logits, flat)
        id_relevant = [False] * len(attr_lens[0]) + [True] * len(attr_lens[1])
        names = attr_names or [f"attr{i}" for i in range(len(flat))]
        results["attr"] = attribute_metrics(preds, targets, names, id_relevant)
    return results
