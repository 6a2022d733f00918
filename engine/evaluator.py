"""Dense feature extraction and the evaluation protocol.

Every dense clip of every tracklet goes through the model in eval mode; clips of several
tracklets are packed into one forward of up to ``clips_per_batch`` clips, and the clip features
of a tracklet are pooled ("avg" or "max", the same for query and gallery). Query and gallery
features are ranked by their float32 distances (CMC and mAP of the MARS / DukeMTMC-VideoReID
protocol: gallery tracklets of the query's identity and camera are no retrievals).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten
from tqdm import tqdm
from yacs.config import CfgNode

from config import attributes_on
from data.attributes import decode_attribute_logits
from engine.compile import FallbackCompiled
from engine.precision import evaluation_dtype
from engine.recorder import RunRecorder
from modeling import VideoBaseline, build_model, fold_batch_norms, load_model_weights
from modeling.build import update_folded_weights
from utils.checkpoint import load_file
from utils.comm import is_main_process
from utils.errors import UserError
from utils.metrics import attribute_metrics, compute_distance_matrix, retrieval_metrics
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
    of 1-2 clips (8 frames of 256x128 keep the activations in cache; measured with
    ``python -m tools.benchmark extract``, README, Performance).
    """
    n = cfg.TEST.CLIPS_PER_BATCH
    return n if n > 0 else AUTO_CLIPS_PER_BATCH.get(device.type, 128)


class _PooledFeatures:
    """Per-tracklet sums (or maxima) of clip features and attribute logits, and clip counts."""

    def __init__(self, num: int, pool: str, device: torch.device) -> None:
        self.num, self.pool, self.device = num, pool, device
        self.feats = self.attr_sum = self.counts = None

    def add(self, f: torch.Tensor, a: torch.Tensor | None, owner: torch.Tensor) -> None:
        """f (c, D) clip features, a (c, L) attribute logits or None, owner (c,) tracklets."""
        if self.feats is None:
            fill = float("-inf") if self.pool == "max" else 0.0
            self.feats = torch.full((self.num, f.shape[1]), fill, device=self.device)
            self.counts = torch.zeros(self.num, device=self.device)
            if a is not None:
                self.attr_sum = torch.zeros(self.num, a.shape[1], device=self.device)
        if self.pool == "max":
            self.feats.scatter_reduce_(0, owner[:, None].expand_as(f), f, reduce="amax")
        else:
            self.feats.index_add_(0, owner, f)
        self.counts.index_add_(0, owner, torch.ones_like(owner, dtype=self.counts.dtype))
        if a is not None:
            self.attr_sum.index_add_(0, owner, a)

    def result(self, m: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(M, D) pooled features and (M, L) mean attribute logits (or None) of m tracklets."""
        feats, counts = self.feats[:m], self.counts[:m, None]
        if self.pool == "avg":
            feats = feats / counts
        attr = self.attr_sum[:m] / counts if self.attr_sum is not None else None
        return feats, attr


def channels_last_clips(clips: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate clip tensors (n_i, T, 3, H, W) into one whose memory is channels last,
    (N, T, H, W, 3), the loaders' layout (``torch.cat`` of 5-d tensors would transpose them
    to the contiguous layout). One tensor already in that layout is returned as it is."""
    t = clips[0].shape[1]
    frames = [c.flatten(0, 1).contiguous(memory_format=torch.channels_last) for c in clips]
    return (torch.cat(frames) if len(frames) > 1 else frames[0]).unflatten(0, (-1, t))


class CompiledForward:
    """The eval forward of a model through ``torch.compile`` (TEST.COMPILE; inductor), with the
    same features to float rounding.

    One graph serves every forward: inputs are given the loaders' channels-last layout, a
    smaller forward than the first (the last of an extraction) is padded with zero clips whose
    outputs are dropped, and a larger one is run in pieces of the first's size. Compilation
    happens at the first call (slow: README, Performance) and writes its files into a temporary
    folder removed with this object (:class:`engine.compile.CompilerFiles`). When it fails
    (e.g. no C++ compiler for the CPU code) the model runs uncompiled, with one warning
    (:class:`engine.compile.FallbackCompiled`).

    By default the weights are inputs of the graph (inductor's ``freezing`` off): the weights
    of ``model`` may change between calls (:func:`inference_model` updates its eval copy in
    place before every evaluation of a training run) and the graph computes with the current
    ones, so it is compiled once per training run. With ``freeze`` the weights are constants
    of the graph (on a CPU prepacked for oneDNN and fused with the additions and ReLUs that
    follow), valid only while they do not change: for the one evaluation of an
    evaluation-only run. How the two graphs' forwards compare with the uncompiled folded
    model's: README, Performance.

    Args:
        model: an eval-mode model (e.g. :func:`modeling.fold_batch_norms`'s copy).
        freeze: freeze the weights into the graph (they must not change afterwards).
    """

    def __init__(self, model: nn.Module, freeze: bool = False) -> None:
        self.model = model
        self.freeze = freeze
        self._clips: int | None = None       # batch size of the compiled graph
        self._forward = FallbackCompiled(model, "the extraction", "TEST.COMPILE", dynamic=False,
                                         inductor_config={"freezing": freeze})

    @property
    def compiled(self) -> bool:
        """Whether the forwards still go through the compiler (False after a fallback)."""
        return self._forward.compiled

    def eval(self) -> CompiledForward:
        self.model.eval()
        return self

    def __call__(self, clips: torch.Tensor):
        """clips (n, T, 3, H, W) -> the model's eval outputs for them."""
        n, size = clips.shape[0], self._clips
        if size is not None and n > size:
            return _cat_outputs([self(clips[s:s + size]) for s in range(0, n, size)])
        if size is not None and n < size:
            padded = channels_last_clips([clips, clips.new_zeros((size - n, *clips.shape[1:]))])
            return tree_map(lambda out: out[:n], self._run(padded))
        out = self._run(channels_last_clips([clips]))
        self._clips = n
        return out

    def _run(self, clips: torch.Tensor):
        """One forward of the compiled graph (of ``self._clips`` clips, but the first)."""
        return self._forward(clips)


def _cat_outputs(outs: list) -> Any:
    """The model outputs of consecutive pieces of a batch as the outputs of the whole batch:
    each tensor of the (nested) outputs concatenated along dim 0."""
    leaves, spec = tree_flatten(outs[0])
    pieces = [tree_flatten(o)[0] for o in outs]
    return tree_unflatten([torch.cat([p[i] for p in pieces]) for i in range(len(leaves))], spec)


def _weights_signature(model: nn.Module) -> tuple:
    """What an eval copy of ``model`` depends on besides the values of its weights: the class,
    the channels_last setting and every parameter and buffer's name, shape, dtype and device."""
    return (type(model), getattr(model, "channels_last", None),
            tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in model.state_dict().items()))


# TEST.COMPILE: one compiled eval copy per model, kept across evaluations (a training run
# evaluates every EVAL_PERIOD epochs) and dropped with the model.
_COMPILED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, CompiledForward]] = (
    weakref.WeakKeyDictionary())


def _compiled_eval_copy(model: nn.Module, fold_bn: bool) -> CompiledForward:
    """The :class:`CompiledForward` of ``model``'s eval copy (folded with ``fold_bn`` for a
    VideoBaseline), with the copy's weights updated to ``model``'s current ones.

    The first evaluation of a model builds the copy and its compiled forward; later ones only
    copy the weights into it (:func:`modeling.build.update_folded_weights`), so the graph is
    compiled once and memory stays flat. A model whose structure changed (another state-dict
    layout, device or dtype) gets a new copy.
    """
    fold = fold_bn and isinstance(model, VideoBaseline)
    key = (fold, _weights_signature(model))
    entry = _COMPILED.get(model)
    if entry is not None and entry[0] == key:
        update_folded_weights(entry[1].model, model)
        return entry[1]
    copy_ = fold_batch_norms(model) if fold else copy.deepcopy(model).eval().requires_grad_(False)
    forward = CompiledForward(copy_)
    _COMPILED[model] = (key, forward)
    return forward


def inference_model(model: nn.Module, fold_bn: bool = True, compile_model: bool = False,
                    freeze: bool = False) -> nn.Module | CompiledForward:
    """The model as extraction runs it (its eval forward: clips (B, T, 3, H, W) ->
    (feat (B, D), attr_logits)).

    ``model`` is put in eval mode. Uncompiled: for a VideoBaseline with ``fold_bn`` a copy with
    its BatchNorms folded (:func:`modeling.fold_batch_norms`), else ``model`` itself. With
    ``compile_model`` (TEST.COMPILE): the :class:`CompiledForward` of an eval copy of ``model``
    (folded as above), the same one at every call for the same model, its weights updated to
    ``model``'s current ones (one compilation per training run). With ``compile_model`` and
    ``freeze``: a new :class:`CompiledForward` with the weights frozen into its graph, for a
    process's single evaluation of these weights (an evaluation-only run): each call compiles
    again and its graph stays in torch's cache, so not for repeated evaluations.
    """
    model.eval()
    if isinstance(model, CompiledForward):
        return model
    if compile_model and not freeze:
        return _compiled_eval_copy(model, fold_bn)
    if fold_bn and isinstance(model, VideoBaseline):
        model = fold_batch_norms(model)
    return CompiledForward(model, freeze=True) if compile_model else model


def _packed(loader: Iterable, clips_per_batch: int, meta: list
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Forwards of up to ``clips_per_batch`` clips, packed across tracklets in loader order.

    Yields ``(clips (c, T, 3, H, W), owner (c,), done)`` with the tracklet index of every clip
    and the number of tracklets whose clips are all in this or earlier forwards; appends
    ``(pid, camid, attr_idx)`` of every tracklet to ``meta``. The last forward holds the
    leftover clips.
    """
    pending: list[torch.Tensor] = []   # clip tensors waiting for a forward
    owners: list[torch.Tensor] = []    # tracklet index of every pending clip
    n_pending = 0
    for i, (clips, pid, camid, attr_idx) in enumerate(loader):
        meta.append((int(pid), int(camid), torch.as_tensor(attr_idx, dtype=torch.long)))
        pending.append(clips)
        owners.append(torch.full((clips.shape[0],), i, dtype=torch.long))
        n_pending += clips.shape[0]
        if n_pending < clips_per_batch:
            continue
        clips, owner = channels_last_clips(pending), torch.cat(owners)
        full = clips.shape[0] - clips.shape[0] % clips_per_batch
        for start in range(0, full, clips_per_batch):
            end = start + clips_per_batch
            # tracklets first..i have clips left after this forward (owners are consecutive)
            first = int(owner[end]) if end < len(owner) else i + 1
            yield clips[start:end], owner[start:end], first
        pending, owners = [clips[full:]], [owner[full:]]
        n_pending = clips.shape[0] - full
    if n_pending:
        yield channels_last_clips(pending), torch.cat(owners), len(meta)


def _progress_bar(total: int, desc: str, progress: bool | None) -> tqdm:
    """The extraction's progress bar on stderr, in tracklets (rate and time left): with
    ``progress`` None only where stderr is a terminal (as the training bar), True always,
    False never; only on the main process."""
    disable = True if progress is False or not is_main_process() else (
        None if progress is None else False)
    return tqdm(total=total, desc=desc, unit="tracklet", disable=disable, leave=False,
                dynamic_ncols=True, mininterval=0.5)


@torch.no_grad()
def extract_features(model: nn.Module, loader: Iterable, device: torch.device,
                     clips_per_batch: int = 128, pool: str = "avg",
                     amp_dtype: torch.dtype | None = None, fold_bn: bool = True,
                     compile_model: bool = False, progress: bool | None = None,
                     desc: str = "features") -> dict:
    """Features of every tracklet of ``loader`` (one item per tracklet).

    Args:
        model: the VideoBaseline (eval mode is set here); eval forward -> (feat, attr_logits).
            Its channels_last setting applies to the forwards.
        loader: sized iterable yielding ``(clips (N, T, 3, H, W), pid, camid, attr_idx (n_attr,))``
            per tracklet (a DataLoader with ``batch_size=None`` or a list).
        device: device of the forward passes.
        clips_per_batch: most clips in one forward; clips of several tracklets are packed.
        pool: "avg" (mean of the clip features) or "max" (element-wise max).
        amp_dtype: autocast dtype of the forwards on ``device`` (float16 or bfloat16; None for
            float32). The features are pooled in float32 either way.
        fold_bn: run a copy of a VideoBaseline with its BatchNorms folded into the
            convolutions (:func:`modeling.fold_batch_norms`: the same features to float
            rounding, faster).
        compile_model: run the forwards through :class:`CompiledForward` (TEST.COMPILE).
        progress: a progress bar on stderr (tracklets done, rate, time left): None where stderr
            is a terminal, True always, False never; only on the main process.
        desc: the bar's label.

    Returns:
        dict with ``feats`` (M, D) float32 on ``device``, ``pids``/``camids`` (M,) int64 numpy,
        ``attr_logits`` (M, sum of class counts) float32 or None (clip logits averaged),
        ``attr_targets`` (M, n_attr) int64 numpy (-1 unknown), ``num_clips`` (int).
    """
    model = inference_model(model, fold_bn, compile_model)
    pooled = _PooledFeatures(len(loader), pool, device)   # one loader item per tracklet
    autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype)
                if amp_dtype is not None else contextlib.nullcontext())
    meta: list[tuple[int, int, torch.Tensor]] = []
    total_clips = 0
    start = time.perf_counter()
    with _progress_bar(len(loader), desc, progress) as bar:
        for clips, owner, done in _packed(loader, clips_per_batch, meta):
            owner = owner.to(device)
            with autocast:
                f, attr = model(clips.to(device, non_blocking=True))
            pooled.add(f.float(), _flat_attr_logits(attr), owner)
            total_clips += clips.shape[0]
            if not bar.disable:
                rate = total_clips / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix_str(f"{total_clips} clips, {rate:.1f} clips/s", refresh=False)
                bar.update(done - bar.n)
    feats, attr_logits = pooled.result(len(meta))
    targets = [t for _, _, t in meta]
    return {
        "feats": feats,
        "pids": np.asarray([p for p, _, _ in meta], dtype=np.int64),
        "camids": np.asarray([c for _, c, _ in meta], dtype=np.int64),
        "attr_logits": attr_logits,
        "attr_targets": torch.stack(targets).numpy() if targets else np.zeros((0, 0), np.int64),
        "num_clips": total_clips,
    }


def query_gallery_distances(qf: torch.Tensor, gf: torch.Tensor, metric: str = "cosine",
                            feat_norm: bool = True, re_rank: bool = False) -> np.ndarray:
    """The (M, N) query-gallery distances of the evaluation protocol.

    Args:
        qf: (M, D) query features; gf: (N, D) gallery features (same device).
        metric: DISTANCE, "cosine" or "euclid".
        feat_norm: L2-normalise the features first (TEST.FEAT_NORM "yes").
        re_rank: k-reciprocal re-ranking (TEST.RE_RANKING "yes"), from the q-g, q-q and g-g
            distances.

    Returns:
        (M, N) float32 numpy array: computed in float32 whatever the features' dtype (e.g.
        float16 / bfloat16 from autocast) and outside any autocast region.
    """
    qf, gf = qf.float(), gf.float()
    with torch.autocast(qf.device.type, enabled=False):
        return _distances(qf, gf, metric, feat_norm, re_rank)


def _distances(qf: torch.Tensor, gf: torch.Tensor, metric: str, feat_norm: bool,
               re_rank: bool) -> np.ndarray:
    if feat_norm:
        qf = torch.nn.functional.normalize(qf, dim=1)
        gf = torch.nn.functional.normalize(gf, dim=1)
    distmat = compute_distance_matrix(qf, gf, metric).cpu().numpy()
    if re_rank:
        distmat = re_ranking(distmat, compute_distance_matrix(qf, qf, metric).cpu().numpy(),
                             compute_distance_matrix(gf, gf, metric).cpu().numpy())
    return distmat


@torch.no_grad()
def evaluate(model: nn.Module, query_loader: Iterable, gallery_loader: Iterable,
             device: torch.device, *, metric: str = "cosine", feat_norm: bool = True,
             re_rank: bool = False, clips_per_batch: int = 128, pool: str = "avg",
             amp_dtype: torch.dtype | None = None, attr_lens: list[list[int]] | None = None,
             attr_names: list[str] | None = None, max_rank: int = 50,
             compile_model: bool = False, freeze: bool = False,
             progress: bool | None = None) -> dict:
    """Extract query and gallery features, rank, and compute CMC/mAP and attribute metrics.

    The arguments are :func:`extract_features`'s and :func:`query_gallery_distances`'s;
    ``attr_lens`` / ``attr_names``: the attribute groups' class counts and names (attribute
    metrics with attribute streams); ``max_rank``: length of the CMC curve; ``freeze``: with
    ``compile_model``, the weights frozen into the graph (:func:`inference_model`: for the one
    evaluation of an evaluation-only run).

    Returns:
        a flat dict: the metrics of :data:`utils.metrics.RETRIEVAL_METRICS` (``mAP, R1, R5, R10,
        R20``, fractions; :func:`utils.metrics.retrieval_metrics`), then ``cmc`` (np.ndarray),
        ``seconds``, ``clips_per_s`` and, with attributes, ``attr`` (see
        utils.metrics.attribute_metrics); :func:`engine.recorder.metric_values` picks the
        metrics.
    """
    t0 = time.perf_counter()
    model = inference_model(model, True, compile_model, freeze)   # once for both extractions
    q = extract_features(model, query_loader, device, clips_per_batch, pool, amp_dtype,
                         fold_bn=False, progress=progress, desc="query features")
    g = extract_features(model, gallery_loader, device, clips_per_batch, pool, amp_dtype,
                         fold_bn=False, progress=progress, desc="gallery features")
    t_extract = time.perf_counter() - t0
    distmat = query_gallery_distances(q["feats"], g["feats"], metric, feat_norm, re_rank)
    metrics, cmc = retrieval_metrics(distmat, q["pids"], g["pids"], q["camids"], g["camids"],
                                     max_rank)
    n_clips = q["num_clips"] + g["num_clips"]
    results = {**metrics, "cmc": cmc, "seconds": time.perf_counter() - t0,
               "clips_per_s": n_clips / max(t_extract, 1e-9)}
    if attr_lens is not None and q["attr_logits"] is not None:
        flat = [n for group in attr_lens for n in group]
        logits = torch.cat([q["attr_logits"], g["attr_logits"]])
        targets = np.concatenate([q["attr_targets"], g["attr_targets"]])
        preds = decode_attribute_logits(logits, attr_lens).cpu().numpy()
        id_relevant = [False] * len(attr_lens[0]) + [True] * len(attr_lens[1])
        names = attr_names or [f"attr{i}" for i in range(len(flat))]
        results["attr"] = attribute_metrics(preds, targets, names, id_relevant)
    return results


def read_trained_weights(cfg: CfgNode) -> Any:
    """The content of TEST.WEIGHT, for :func:`load_trained_model` (commands read it before
    parsing the dataset, so that a bad path fails at once).

    Raises:
        UserError: TEST.WEIGHT is empty or unreadable.
    """
    if not cfg.TEST.WEIGHT:
        raise UserError("No weights given: add TEST.WEIGHT path/to/checkpoint.pth after the "
                        "options (a trained run's checkpoint_ep*.pth or rank1_*.pth).")
    return load_file(cfg.TEST.WEIGHT)


def load_trained_model(cfg: CfgNode, dataset: Any, device: torch.device,
                       state: Any = None) -> VideoBaseline:
    """The config's model with the trained weights of TEST.WEIGHT, in eval mode on ``device``
    (the model of evaluation-only runs, ``tools.export_features`` and ``tools.visualize``).

    Built for the dataset's identities and attribute groups (``num_train_pids``, ``attr_lens``)
    without the MODEL.PRETRAIN_CHOICE weights (the checkpoint replaces every weight); an
    identity classifier of the checkpoint that does not fit (another dataset) is left out:
    retrieval never uses it (:func:`modeling.load_model_weights`, ``retrieval_only``).

    Args:
        cfg: the config (MODEL.*, TEST.WEIGHT).
        dataset: the parsed dataset, or anything with its ``num_train_pids`` and ``attr_lens``.
        device: where the model runs.
        state: TEST.WEIGHT's content when already read (:func:`read_trained_weights`); None
            reads it here.

    Raises:
        UserError: TEST.WEIGHT is empty, unreadable, or does not fit the model.
    """
    if state is None:
        state = read_trained_weights(cfg)
    model = build_model(cfg, dataset.num_train_pids, dataset.attr_lens, load_pretrained=False,
                        device=device)
    load_model_weights(model, state, source=f"checkpoint '{cfg.TEST.WEIGHT}' (TEST.WEIGHT)",
                       retrieval_only=True)
    return model.to(device).eval()


def evaluation_kwargs(cfg: CfgNode, dataset: Any, device: torch.device,
                      amp_dtype: torch.dtype | None) -> dict:
    """Keyword arguments of :func:`evaluate` from the config."""
    with_attr = attributes_on(cfg, getattr(dataset, "attr_lens", None))
    return dict(metric=cfg.DISTANCE, feat_norm=cfg.TEST.FEAT_NORM == "yes",
                re_rank=cfg.TEST.RE_RANKING == "yes", clips_per_batch=clips_per_batch(cfg, device),
                pool=cfg.TEST.TEMPORAL_POOL_METHOD, amp_dtype=amp_dtype,
                compile_model=cfg.TEST.COMPILE, attr_lens=dataset.attr_lens if with_attr else None,
                attr_names=list(dataset.attr_names) if with_attr else None)


def run_evaluation(cfg: CfgNode, model: nn.Module, query_loader: Any, gallery_loader: Any,
                   dataset: Any, device: torch.device, run_dir: str | None) -> dict:
    """Evaluation-only run: evaluate, log the results table, write metrics.json.

    Its single evaluation freezes the weights into a compiled graph (TEST.COMPILE; the faster
    graph on a CPU, see :class:`CompiledForward`)."""
    amp_dtype = evaluation_dtype(cfg, device, log=True)
    results = evaluate(model, query_loader, gallery_loader, device, freeze=True,
                       **evaluation_kwargs(cfg, dataset, device, amp_dtype))
    RunRecorder(run_dir, tensorboard=False, info={"weights": cfg.TEST.WEIGHT}).evaluation(
        0, results, f"Results of {cfg.TEST.WEIGHT or 'the model'} ({results['seconds']:.1f} s)")
    return results
