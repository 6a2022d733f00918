"""Losses: vectorised mining against per-anchor loop oracles, values and gradients."""

import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from config import get_cfg, load_cfg
from layers import (
    CenterLoss,
    CrossEntropyLabelSmooth,
    ReidCriterion,
    aitl_loss,
    attribute_group_vectors,
    attribute_loss,
    batch_hard_triplet_loss,
    loss_formula,
    make_loss,
    pairwise_distance,
)
from layers.aitl import _aitl_pairs
from layers.distance import _Gram
from layers.triplet import _batch_hard_from_dist
from tests.helpers import MARS_ATTR_LENS, ROOT
from tools.benchmark_losses import format_table, run_loss_benchmark
from utils.attribute_schemas import BUILTIN_SCHEMAS, DUKE_SCHEMA, MARS_SCHEMA, AttributeSchema
from utils.errors import UserError


# ----------------------------------------------------------------------------- loop oracles
def loop_distance(x: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-pair distances straight from the definitions."""
    n = len(x)
    rows = []
    for i in range(n):
        row = []
        for j in range(n):
            if metric == "cosine":
                row.append(1 - (x[i] @ x[j]) / (x[i].norm() * x[j].norm()))
            else:
                row.append(((x[i] - x[j]) ** 2).sum().clamp(min=1e-12).sqrt())
        rows.append(torch.stack(row))
    return torch.stack(rows)


def loop_batch_hard(dist: torch.Tensor, pids: list, margin: float) -> torch.Tensor:
    """The original's style: per anchor, max over positives and min over negatives."""
    n = len(pids)
    d_ap, d_an = [], []
    for i in range(n):
        pos = [j for j in range(n) if pids[j] == pids[i]]
        neg = [j for j in range(n) if pids[j] != pids[i]]
        d_ap.append(dist[i, pos].max())
        d_an.append(dist[i, neg].min())
    return nn.MarginRankingLoss(margin)(torch.stack(d_an), torch.stack(d_ap), torch.ones(n))


def loop_aitl(dist: torch.Tensor, pids: list, attrs: torch.Tensor, margin: float = 0.0,
              exclude_self: bool = False) -> torch.Tensor:
    """Per anchor: attribute-farthest/nearest positive (first index on ties)."""
    n = len(pids)
    terms = []
    for i in range(n):
        pos = [j for j in range(n) if pids[j] == pids[i] and not (exclude_self and j == i)]
        if not pos:
            continue
        ad = [float(((attrs[i] - attrs[j]) ** 2).sum().clamp(min=1e-12).sqrt()) for j in pos]
        far, near = pos[ad.index(max(ad))], pos[ad.index(min(ad))]
        terms.append(F.relu(dist[i, far] - dist[i, near] + margin))
    return torch.stack(terms).mean()


# ----------------------------------------------------------------------------- inputs
def make_batch(k, seed=0, dim=16):
    """Shuffled P x K identities (or uneven counts), duplicated features and attributes."""
    g = torch.Generator().manual_seed(seed)
    if k == "uneven":
        pids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 3])
    else:
        pids = torch.arange(24 // k).repeat_interleave(k)
    pids = pids[torch.randperm(len(pids), generator=g)]
    n = len(pids)
    feats = torch.randint(-3, 4, (n, dim), generator=g).float()
    attrs = torch.randint(0, 3, (n, 7), generator=g).float()
    # exact ties: a positive's copy of the anchor's attributes and of another's features
    same = [j for j in range(1, n) if pids[j] == pids[0]]
    attrs[same[0]] = attrs[0]
    feats[same[-1]] = feats[0]
    return feats, pids, attrs


METRICS = ["cosine", "euclid"]
KS = [2, 4, 8, "uneven"]


# ----------------------------------------------------------------------------- distances
@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_distance_matches_definition(metric):
    x = 3 * torch.randn(6, 5)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    d, ref = pairwise_distance(x1, metric), loop_distance(x2, metric)
    assert d.shape == (6, 6) and d.dtype == torch.float32
    torch.testing.assert_close(d, ref, atol=1e-5, rtol=1e-5)
    if metric == "euclid":      # sqrt(clamp(0, 1e-12)) exactly, as the brief asks
        assert torch.equal(d.diagonal(), torch.full((6,), 1e-6))
    w = torch.rand(6, 6) * ~torch.eye(6, dtype=torch.bool)
    (d * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-4, rtol=1e-4)


def test_gram_backward_is_exact():
    torch.autograd.gradcheck(_Gram.apply, torch.randn(5, 4, dtype=torch.float64,
                                                      requires_grad=True))


def test_euclid_distance_of_copies():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [4.0, 6.0]])
    d = pairwise_distance(x, "euclid")
    assert torch.equal(d.diagonal(), torch.full((3,), 1e-6))
    assert d[0, 1] == 1e-6 and d[0, 2] == 5.0


def test_unknown_metric_raises():
    with pytest.raises(ValueError, match="euclid"):
        pairwise_distance(torch.randn(3, 2), "manhattan")


@pytest.mark.parametrize("metric", METRICS)
def test_distance_and_losses_float32_under_bf16_autocast(metric):
    torch.manual_seed(0)
    lin = nn.Linear(8, 16)
    x = torch.randn(8, 8)
    pids = torch.arange(4).repeat_interleave(2)
    attrs = torch.randn(8, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = lin(x)
        assert feats.dtype == torch.bfloat16
        d = pairwise_distance(feats, metric)
        t = batch_hard_triplet_loss(feats, pids, 0.3, metric)
        a = aitl_loss(feats, pids, attrs.bfloat16(), metric)
    assert d.dtype == t.dtype == a.dtype == torch.float32
    f32 = feats.detach().float()
    torch.testing.assert_close(d, pairwise_distance(f32, metric))
    torch.testing.assert_close(t, batch_hard_triplet_loss(f32, pids, 0.3, metric))
    (t + a).backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()


# ----------------------------------------------------------------------------- triplet
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", KS)
def test_batch_hard_triplet_matches_loop(metric, k):
    feats, pids, _ = make_batch(k, seed=1)
    f1, f2 = feats.clone().requires_grad_(), feats.clone().requires_grad_()
    loss = batch_hard_triplet_loss(f1, pids, 0.3, metric)
    ref = loop_batch_hard(pairwise_distance(f2, metric), pids.tolist(), 0.3)
    torch.testing.assert_close(loss, ref)
    assert loss > 0
    loss.backward()
    ref.backward()
    torch.testing.assert_close(f1.grad, f2.grad)
    assert f1.grad.abs().sum() > 0


def test_batch_hard_ties_share_the_gradient_like_the_loop():
    # anchor 0: positives 1 and 2 tie as farthest; negatives 3 and 4 tie as closest
    dist = torch.tensor([[0.0, 0.9, 0.9, 0.5, 0.5],
                         [0.9, 0.0, 0.2, 0.7, 0.8],
                         [0.9, 0.2, 0.0, 0.6, 0.6],
                         [0.5, 0.7, 0.6, 0.0, 0.3],
                         [0.5, 0.8, 0.6, 0.3, 0.0]])
    pids = [0, 0, 0, 1, 1]
    d1, d2 = dist.clone().requires_grad_(), dist.clone().requires_grad_()
    loss = _batch_hard_from_dist(d1, torch.tensor(pids)[:, None] == torch.tensor(pids), 0.3)
    ref = loop_batch_hard(d2, pids, 0.3)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(d1.grad, d2.grad)
    assert d1.grad[0, 1] == d1.grad[0, 2] == 0.2 / 2      # 1/B split over the two ties


def test_batch_hard_single_identity_is_zero_and_finite():
    f = torch.randn(4, 6, requires_grad=True)
    loss = batch_hard_triplet_loss(f, torch.zeros(4, dtype=torch.long), 0.3, "cosine")
    loss.backward()
    assert loss == 0 and torch.isfinite(f.grad).all()


# ----------------------------------------------------------------------------- AITL
@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", KS)
def test_aitl_matches_loop(metric, k, exclude_self):
    feats, pids, attrs = make_batch(k, seed=2)
    f1, f2 = feats.clone().requires_grad_(), feats.clone().requires_grad_()
    loss = aitl_loss(f1, pids, attrs, metric, margin=0.1, exclude_self=exclude_self)
    ref = loop_aitl(pairwise_distance(f2, metric), pids.tolist(), attrs, 0.1, exclude_self)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(f1.grad, f2.grad)
    # with K = 2 and the anchor excluded, p_far = p_near: a constant margin, no gradient
    assert (f1.grad.abs().sum() > 0) != (k == 2 and exclude_self)


def test_aitl_ties_pick_the_first_index():
    # one identity, attribute vectors [v, v, w, w]: every distance ties with another
    v, w = [1.0, 0.0, 2.0], [0.0, 3.0, 1.0]
    attrs = torch.tensor([v, v, w, w])
    same = torch.ones(4, 4, dtype=torch.bool)
    far, near, valid = _aitl_pairs(attrs, same, exclude_self=False)
    assert far.tolist() == [2, 2, 0, 0]
    assert near.tolist() == [0, 0, 2, 2]     # anchor 1: its copy 0 (1e-6 each) comes first
    far, near, valid = _aitl_pairs(attrs, same, exclude_self=True)
    assert far.tolist() == [2, 2, 0, 0]
    assert near.tolist() == [1, 0, 3, 2]
    assert valid.all()


def test_aitl_includes_self_so_near_is_the_anchor():
    torch.manual_seed(3)
    pids = torch.arange(3).repeat_interleave(4)
    attrs = torch.randn(3, 20).repeat_interleave(4, 0) + 0.05 * torch.randn(12, 20)
    same = pids[:, None] == pids[None, :]
    far, near, _ = _aitl_pairs(attrs, same, exclude_self=False)
    assert torch.equal(near, torch.arange(12))
    assert (far != torch.arange(12)).all() and (pids[far] == pids).all()
    feats = torch.randn(12, 8)
    d = pairwise_distance(feats, "cosine")
    expected = F.relu(d[torch.arange(12), far] - d.diagonal()).mean()
    torch.testing.assert_close(aitl_loss(feats, pids, attrs, "cosine"), expected)
    _, near_ex, _ = _aitl_pairs(attrs, same, exclude_self=True)
    assert (near_ex != torch.arange(12)).all() and (pids[near_ex] == pids).all()


def test_aitl_exclude_self_skips_anchors_without_other_positives():
    pids = torch.tensor([0, 0, 1, 2, 2, 2])      # identity 1 has one instance
    feats = torch.randn(6, 5, requires_grad=True)
    attrs = torch.randn(6, 4)
    loss = aitl_loss(feats, pids, attrs, "euclid", margin=0.2, exclude_self=True)
    ref = loop_aitl(pairwise_distance(feats, "euclid"), pids.tolist(), attrs, 0.2, True)
    torch.testing.assert_close(loss, ref)
    alone = aitl_loss(feats[:1], pids[:1], attrs[:1], "euclid", exclude_self=True)
    assert alone == 0


def test_aitl_gives_no_gradient_to_the_attribute_vectors():
    feats = torch.randn(8, 5, requires_grad=True)
    attrs = torch.randn(8, 4, requires_grad=True)
    aitl_loss(feats, torch.arange(2).repeat_interleave(4), attrs, "cosine").backward()
    assert attrs.grad is None and feats.grad is not None


# ----------------------------------------------------------------------------- ID / center
def test_label_smoothing_matches_formula():
    torch.manual_seed(4)
    logits, y, eps, c = torch.randn(5, 7), torch.tensor([0, 3, 6, 3, 1]), 0.1, 7
    logp = logits.log_softmax(1)
    expected = -((1 - eps) * logp[torch.arange(5), y] + eps / c * logp.sum(1)).mean()
    torch.testing.assert_close(CrossEntropyLabelSmooth(c, eps)(logits, y), expected)
    torch.testing.assert_close(CrossEntropyLabelSmooth(c, 0.0)(logits, y),
                               F.cross_entropy(logits, y))
    with pytest.raises(ValueError, match="7 classes"):
        CrossEntropyLabelSmooth(c)(torch.randn(5, 6), y)


def test_center_loss_matches_loop():
    torch.manual_seed(5)
    center = CenterLoss(4, 3)
    feats, pids = torch.randn(6, 3), torch.tensor([0, 1, 1, 3, 2, 0])
    expected = sum(((feats[i] - center.centers[p]) ** 2).sum() for i, p in enumerate(pids)) / 6
    torch.testing.assert_close(center(feats, pids), expected)


# ----------------------------------------------------------------------------- criterion
def model_outputs(attr_mode, n=8, num_classes=4, dim=12, seed=6):
    g = torch.Generator().manual_seed(seed)
    pids = torch.arange(n // 2).repeat_interleave(2) % num_classes
    cls = torch.randn(n, num_classes, generator=g, requires_grad=True)
    feat = torch.randn(n, dim, generator=g, requires_grad=True)
    if attr_mode is None:
        return (cls, feat, None), pids, torch.empty(n, 0, dtype=torch.long)
    if attr_mode == "bce":
        logits = [torch.randn(n, sum(lens), generator=g, requires_grad=True)
                  for lens in MARS_ATTR_LENS]
        targets = []
        for lens in MARS_ATTR_LENS:
            onehots = [F.one_hot(torch.randint(0, c, (n,), generator=g), c) for c in lens]
            targets.append(torch.cat(onehots, 1).float())
        return (cls, feat, logits), pids, targets
    lens = MARS_ATTR_LENS[0] + MARS_ATTR_LENS[1]
    logits = [torch.randn(n, c, generator=g, requires_grad=True) for c in lens]
    targets = torch.stack([torch.randint(0, c, (n,), generator=g) for c in lens], 1)
    return (cls, feat, logits), pids, targets


@pytest.mark.parametrize("attr_mode", ["bce", "mce"])
def test_criterion_total_with_attributes(attr_mode):
    outputs, pids, targets = model_outputs(attr_mode)
    cls, feat, logits = outputs
    crit = ReidCriterion(4, margin=0.3, metric="cosine", attr_mode=attr_mode,
                         attr_lens=MARS_ATTR_LENS)
    losses = crit(outputs, pids, targets)
    assert list(losses) == ["loss_id", "loss_triplet", "loss_aitl_unrelated",
                            "loss_aitl_related", "loss_attr", "total"]
    if attr_mode == "bce":
        groups = logits
        attr = sum(F.binary_cross_entropy_with_logits(lg, t) for lg, t in zip(logits, targets))
    else:
        groups = [torch.cat(logits[:9], 1), torch.cat(logits[9:], 1)]
        attr = sum(F.cross_entropy(lg, targets[:, k]) for k, lg in enumerate(logits)) / 21
    assert [g.shape[1] for g in groups] == [25, 41]
    id_loss = CrossEntropyLabelSmooth(4)(cls, pids)
    triplet = batch_hard_triplet_loss(feat, pids, 0.3, "cosine")
    unrelated = aitl_loss(feat, pids, groups[0], "cosine")
    related = aitl_loss(feat, pids, groups[1], "cosine")
    assert triplet > 0 and unrelated > 0 and related > 0
    torch.testing.assert_close(losses["loss_triplet"], triplet / 3)
    torch.testing.assert_close(losses["loss_aitl_unrelated"], unrelated / 3)
    torch.testing.assert_close(losses["loss_aitl_related"], related / 3)
    torch.testing.assert_close(losses["loss_attr"], attr)
    torch.testing.assert_close(losses["total"],
                               id_loss + (triplet + unrelated + related) / 3 + attr)
    torch.testing.assert_close(losses["total"],
                               sum(v for k, v in losses.items() if k != "total"))
    # the attribute logits are trained by the attribute loss only (AITL selects indices)
    losses["total"].backward()
    ref = [lg.detach().clone().requires_grad_() for lg in logits]
    if attr_mode == "bce":
        sum(F.binary_cross_entropy_with_logits(lg, t) for lg, t in zip(ref, targets)).backward()
    else:
        (sum(F.cross_entropy(lg, targets[:, k]) for k, lg in enumerate(ref)) / 21).backward()
    for lg, r in zip(logits, ref):
        torch.testing.assert_close(lg.grad, r.grad)


def test_criterion_total_without_attributes():
    outputs, pids, targets = model_outputs(None)
    cls, feat, _ = outputs
    losses = ReidCriterion(4, metric="euclid", label_smooth=False)(outputs, pids, targets)
    assert list(losses) == ["loss_id", "loss_triplet", "total"]
    expected = F.cross_entropy(cls, pids) + batch_hard_triplet_loss(feat, pids, 0.3, "euclid")
    torch.testing.assert_close(losses["total"], expected)


def test_criterion_rejects_mismatched_attribute_logits():
    outputs, pids, targets = model_outputs("bce")
    crit = ReidCriterion(4, attr_mode="mce", attr_lens=MARS_ATTR_LENS)
    with pytest.raises(ValueError, match="one tensor per attribute"):
        crit(outputs, pids, targets)
    with pytest.raises(ValueError, match="no attribute logits"):
        crit(outputs[:2] + (None,), pids, targets)
    with pytest.raises(ValueError, match="attr_lens"):
        ReidCriterion(4, attr_mode="bce")


def test_criterion_under_autocast_is_float32():
    outputs, pids, targets = model_outputs("bce")
    cls, feat, logits = outputs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = (cls.bfloat16(), feat.bfloat16(), [lg.bfloat16() for lg in logits])
        losses = ReidCriterion(4, attr_mode="bce", attr_lens=MARS_ATTR_LENS)(half, pids, targets)
    assert all(v.dtype == torch.float32 for v in losses.values())
    losses["total"].backward()
    assert torch.isfinite(feat.grad).all()


# ----------------------------------------------------------------------------- make_loss
def test_make_loss_paper_config_has_no_center_loss():
    cfg = load_cfg(str(ROOT / "configs" / "softmax_triplet_tlaw.yml"))
    assert cfg.MODEL.IF_WITH_CENTER == "yes" and cfg.MODEL.METRIC_LOSS_TYPE == "triplet_center"
    crit = make_loss(cfg, 4, MARS_ATTR_LENS, feat_dim=12)
    assert crit.center_loss is None and crit.attr_mode == "bce" and crit.metric == "cosine"
    assert len(list(crit.parameters())) == 0
    outputs, pids, targets = model_outputs("bce")
    assert "loss_center" not in crit(outputs, pids, targets)


def test_make_loss_attribute_switches():
    cfg = get_cfg()
    assert make_loss(cfg, 4, None).attr_mode is None
    paper = make_loss(cfg, 4)                 # MARS schema from DATASETS.NAME: every term
    outputs, pids, targets = model_outputs("bce")
    assert {"loss_id", "loss_triplet", "loss_aitl_unrelated", "loss_aitl_related",
            "loss_attr"} <= set(paper(outputs, pids, targets))
    cfg.DATASETS.NAME = "prid"
    assert make_loss(cfg, 4).attr_mode is None
    cfg.DATASETS.NAME = "mars"
    cfg.DATASETS.ATTRIBUTE_LOSS = "mce"
    assert make_loss(cfg, 4, MARS_ATTR_LENS).attr_mode == "mce"
    cfg.ATTR_RECOG_ON = False
    assert make_loss(cfg, 4, MARS_ATTR_LENS).attr_mode is None


def test_make_loss_reads_no_file_the_folder_dataset_passes_its_attr_lens(tmp_path):
    from tools.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "tracklets", fmt="folder", ids=4, tracklets=2,
                                   frames=2, size=(32, 16))
    assert (root / "attributes.yml").is_file()
    cfg = get_cfg()
    cfg.DATASETS.NAME, cfg.DATASETS.ROOT_DIR = "folder", str(root)
    assert make_loss(cfg, 4).attr_mode is None          # attributes.yml is not read
    crit = make_loss(cfg, 4, MARS_ATTR_LENS)           # the folder dataset's dataset.attr_lens
    assert crit.attr_mode == "bce" and crit.attr_lens == MARS_ATTR_LENS


@pytest.mark.parametrize(("name", "schema"), [("mars", MARS_SCHEMA), ("duke", DUKE_SCHEMA)])
def test_make_loss_uses_the_builtin_schema_of_the_paper_datasets(name, schema):
    cfg = get_cfg()
    cfg.DATASETS.NAME, cfg.DATASETS.ROOT_DIR = name, "/nonexistent/folder"
    crit = make_loss(cfg, 4)
    assert crit.attr_mode == "bce" and crit.attr_lens == schema.attr_lens
    assert BUILTIN_SCHEMAS[name] is schema


def test_builtin_schemas_are_the_dataset_classes_and_data_reexports_them():
    from data import attributes
    from data.datasets import DATASETS

    assert {n: c.attribute_schema for n, c in DATASETS.items()
            if c.attribute_schema is not None} == dict(BUILTIN_SCHEMAS)
    assert attributes.MARS_SCHEMA is MARS_SCHEMA and attributes.DUKE_SCHEMA is DUKE_SCHEMA
    assert attributes.AttributeSchema is AttributeSchema
    assert MARS_SCHEMA.attr_lens == MARS_ATTR_LENS
    assert [sum(g) for g in DUKE_SCHEMA.attr_lens] == [25, 33]


def test_layers_and_the_schemas_load_without_data():
    code = ("import sys, layers, utils.attribute_schemas; "
            "assert not [m for m in sys.modules if m == 'data' or m.startswith('data.')]")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ----------------------------------------------------------------------------- terms
def _unweighted(crit, outputs, pids, targets):
    """Every term of ``crit`` computed without its weight, from the loss functions."""
    cls, feat, logits = outputs
    terms = {"loss_id": crit.id_loss(cls, pids)}
    if crit.attr_mode is None:
        terms["loss_triplet"] = batch_hard_triplet_loss(feat, pids, crit.margin, crit.metric)
    else:
        groups = attribute_group_vectors(logits, crit.attr_mode, crit.attr_lens)
        terms["loss_triplet"] = batch_hard_triplet_loss(feat, pids, crit.margin, crit.metric)
        terms["loss_aitl_unrelated"] = aitl_loss(feat, pids, groups[0], crit.metric)
        terms["loss_aitl_related"] = aitl_loss(feat, pids, groups[1], crit.metric)
        terms["loss_attr"] = attribute_loss(logits, targets, crit.attr_mode)
    if crit.center_loss is not None:
        terms["loss_center"] = crit.center_loss(feat, pids)
    return terms


@pytest.mark.parametrize(("attr_mode", "center"), [(None, False), ("bce", False),
                                                    ("mce", False), ("bce", True),
                                                    (None, True)])
def test_criterion_terms_are_its_weighted_sum(attr_mode, center):
    outputs, pids, targets = model_outputs(attr_mode)
    crit = ReidCriterion(4, attr_mode=attr_mode,
                         attr_lens=MARS_ATTR_LENS if attr_mode else None, use_center=center,
                         feat_dim=12, center_weight=0.01)
    losses = crit(outputs, pids, targets)
    names = [name for name, _ in crit.terms]
    assert names == [k for k in losses if k != "total"]
    unweighted = _unweighted(crit, outputs, pids, targets)
    for name, weight in crit.terms:
        torch.testing.assert_close(losses[name], weight * unweighted[name])
    torch.testing.assert_close(losses["total"],
                               sum(w * unweighted[n] for n, w in crit.terms))
    expected = {None: [("loss_id", 1.0), ("loss_triplet", 1.0)],
                "bce": [("loss_id", 1.0), ("loss_triplet", 1 / 3),
                        ("loss_aitl_unrelated", 1 / 3), ("loss_aitl_related", 1 / 3),
                        ("loss_attr", 1.0)]}
    assert crit.terms == expected.get(attr_mode, expected["bce"]) + (
        [("loss_center", 0.01)] if center else [])


def test_formula_is_written_from_the_terms():
    cfg = get_cfg()
    assert make_loss(cfg, 4).formula() == ("total = loss_id + (loss_triplet + "
                                           "loss_aitl_unrelated + loss_aitl_related) / 3 + "
                                           "loss_attr")
    assert make_loss(cfg, 4, None).formula({"loss_id": "ID"}) == "total = ID + loss_triplet"
    cfg.SOLVER.USE_CENTER_LOSS = True
    cfg.MODEL.IF_WITH_CENTER, cfg.MODEL.METRIC_LOSS_TYPE = "yes", "triplet_center"
    assert make_loss(cfg, 4, None, feat_dim=3).formula().endswith(" + 0.0005 * loss_center")
    assert loss_formula([("a", 1.0), ("b", 0.5), ("c", 0.5), ("d", 1 / 7), ("e", 0.1234567),
                         ("f", 2.0)], {"f": "x + y"}) == (
        "total = a + 0.5 * (b + c) + d / 7 + 0.1235 * e + 2 * (x + y)")
    assert loss_formula([]) == "total = 0"


def test_make_loss_center_loss_on_request():
    cfg = get_cfg()
    cfg.SOLVER.USE_CENTER_LOSS = True
    with pytest.raises(UserError, match="MODEL.IF_WITH_CENTER"):
        make_loss(cfg, 4, None, feat_dim=12)
    cfg.MODEL.IF_WITH_CENTER = "yes"
    cfg.MODEL.METRIC_LOSS_TYPE = "triplet_center"
    with pytest.raises(UserError, match="feat_dim"):
        make_loss(cfg, 4, None)
    crit = make_loss(cfg, 4, None, feat_dim=12)
    outputs, pids, targets = model_outputs(None)
    losses = crit(outputs, pids, targets)
    expected = cfg.SOLVER.CENTER_LOSS_WEIGHT * crit.center_loss(outputs[1], pids)
    torch.testing.assert_close(losses["loss_center"], expected)
    torch.testing.assert_close(losses["total"], losses["loss_id"] + losses["loss_triplet"]
                               + losses["loss_center"])


def test_loss_benchmark_runs_and_its_loop_baseline_agrees():
    results = run_loss_benchmark(batch_sizes=(8, 12), feat_dim=16, repeats=1, metric="euclid")
    assert list(results) == [8, 12]                     # exactly the batch sizes asked for
    for row in results.values():
        assert set(row) == {"loop_pair_ms", "ours_pair_ms", "speedup_pair", "loop_all_ms",
                            "ours_all_ms", "speedup_all"}
        for name in ("pair", "all"):                   # each speed-up is of its own timings
            assert row[f"speedup_{name}"] == row[f"loop_{name}_ms"] / row[f"ours_{name}_ms"]
    lines = format_table(results).splitlines()
    assert [int(line.split("|")[0]) for line in lines[1:]] == [8, 12]   # a row per batch size
    assert lines[2].endswith(f"{results[12]['speedup_all']:>7.1f}x")
    with pytest.raises(ValueError, match="batch size 6 is not a multiple of 4"):
        run_loss_benchmark(batch_sizes=(6,), feat_dim=16, repeats=1)
