"""Evaluation metrics: CMC/mAP, distances, attribute metrics, re-ranking (docs/behaviour.md).

The fast implementations are compared with straightforward per-query / per-pair loops
written here from the definitions.
"""

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import utils.metrics as metrics
import utils.reranking as reranking
from tools.benchmark_eval import run_eval_benchmark
from utils.metrics import (
    attribute_metrics,
    compute_distance_matrix,
    evaluate_rank,
    format_results_table,
)
from utils.reranking import re_ranking, smallest_k_stable

# ----------------------------------------------------------------------------- oracles


def rank_oracle(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Per-query loop: stable sort, drop same pid+camera, CMC and AP from the definitions."""
    cmcs, aps = [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        keep = [j for j in order if not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])]
        rel = [int(g_pids[j] == q_pids[i]) for j in keep]
        if sum(rel) == 0:
            continue
        first = rel.index(1) + 1
        cmcs.append([1.0 if k >= first else 0.0 for k in range(1, max_rank + 1)])
        precisions = [sum(rel[:k + 1]) / (k + 1) for k in range(len(rel)) if rel[k]]
        aps.append(sum(precisions) / len(precisions))
    return np.mean(cmcs, axis=0), float(np.mean(aps)), len(aps)


def random_problem(rng, m, n, num_ids=6, num_cams=3, levels=5):
    """Integer-valued distances (many ties), pid 0 distractors in the gallery."""
    dist = rng.integers(0, levels, (m, n)).astype(np.float32)
    q_pids = rng.integers(1, num_ids, m)
    g_pids = rng.integers(0, num_ids, n)
    return dist, q_pids, g_pids, rng.integers(0, num_cams, m), rng.integers(0, num_cams, n)


def rerank_oracle(qg, qq, gg, k1, k2, lam):
    """Dense re-ranking from the paper's definitions, one item at a time."""
    nq = len(qq)
    n = nq + len(gg)
    full = np.block([[qq, qg], [qg.T, gg]]).astype(np.float32)
    d = full * full
    mx = d.max(axis=1)
    d = d / np.where(mx > 0, mx, 1)[:, None]
    rank = np.argsort(d, axis=1, kind="stable")

    def reciprocal(p, k):
        return [x for x in rank[p, :k + 1] if p in rank[x, :k + 1]]

    v = np.zeros((n, n))
    for p in range(n):
        base = reciprocal(p, k1)
        expanded = set(base)
        for q in base:
            cand = reciprocal(q, round(k1 / 2))
            if len(set(cand) & set(base)) > 2 / 3 * len(cand):
                expanded |= set(cand)
        idx = sorted(expanded)
        w = np.exp(-d[p, idx].astype(np.float64))
        v[p, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[p, :k2]].mean(axis=0) for p in range(n)])
    jac = np.zeros((nq, n - nq))
    for i in range(nq):
        for g in range(n - nq):
            a, b = v[i], v[nq + g]
            jac[i, g] = 1 - np.minimum(a, b).sum() / np.maximum(a, b).sum()
    return jac * (1 - lam) + d[:nq, nq:] * lam


# ----------------------------------------------------------------------------- evaluate_rank


def test_evaluate_rank_hand_example(caplog):
    # Gallery: g0 pid1/cam0, g1 pid1/cam1, g2 pid2/cam0, g3 distractor pid0/cam2, g4 pid1/cam2.
    g_pids, g_cams = [1, 1, 2, 0, 1], [0, 1, 0, 2, 2]
    q_pids, q_cams = [1, 2, 5], [0, 1, 0]
    dist = np.array([
        # q0 (pid1, cam0): g0 removed (same pid+cam); kept order g2, g3, g1, g4
        # -> matches at ranks 3 and 4: AP = (1/3 + 2/4) / 2 = 5/12, first match rank 3.
        [0.1, 0.4, 0.2, 0.3, 0.5],
        # q1 (pid2, cam1): ties at 0.3 keep gallery order: g3, g4, g0, g1, g2
        # -> its only match g2 at rank 5: AP = 1/5.
        [0.3, 0.3, 0.3, 0.1, 0.2],
        # q2 (pid5): no gallery match -> skipped.
        [0.5, 0.4, 0.3, 0.2, 0.1],
    ])
    with caplog.at_level(logging.INFO, logger="reid.metrics"):
        cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=7)
    # max_rank 7 > 5 gallery items: padded with the last value.
    np.testing.assert_allclose(cmc, [0, 0, 0.5, 0.5, 1, 1, 1])
    assert mAP == pytest.approx((5 / 12 + 1 / 5) / 2)
    assert "1 of 3 queries" in caplog.text


@pytest.mark.parametrize("block", [metrics._BLOCK_ELEMENTS, 7])
@pytest.mark.parametrize("seed", range(6))
def test_evaluate_rank_matches_loop_oracle(seed, block, monkeypatch):
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", block)   # 7: chunks of one query
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(5, 30)), int(rng.integers(3, 90))   # n < max_rank sometimes
    dist, qp, gp, qc, gc = random_problem(rng, m, n)
    qp[0], gp[0], qc[0], gc[0] = 1, 1, 0, 1     # at least one valid query
    for max_rank in (1, 10, 50):
        want_cmc, want_map, num_valid = rank_oracle(dist, qp, gp, qc, gc, max_rank)
        cmc, mAP = evaluate_rank(dist, qp, gp, qc, gc, max_rank)
        assert cmc.shape == (max_rank,)
        np.testing.assert_allclose(cmc, want_cmc, rtol=0, atol=1e-12)
        assert mAP == pytest.approx(want_map, abs=1e-12)


def test_evaluate_rank_continuous_distances_and_tensor_input():
    rng = np.random.default_rng(1)
    dist, qp, gp, qc, gc = random_problem(rng, 40, 120, num_ids=10)
    dist = dist + rng.random(dist.shape).astype(np.float32)   # few ties
    want_cmc, want_map, _ = rank_oracle(dist, qp, gp, qc, gc, 50)
    cmc, mAP = evaluate_rank(torch.from_numpy(dist), torch.from_numpy(qp), list(gp), qc, gc)
    np.testing.assert_allclose(cmc, want_cmc, atol=1e-12)
    assert mAP == pytest.approx(want_map, abs=1e-12)
    # Same-camera same-id entries are not matches: moving all of a query's matches into its
    # own camera makes it invalid.
    gc2 = np.where(gp == qp[0], qc[0], gc)
    _, _, n_before = rank_oracle(dist, qp, gp, qc, gc, 50)
    _, _, n_after = rank_oracle(dist, qp, gp, qc, gc2, 50)
    assert n_after == n_before - 1
    cmc2, map2 = evaluate_rank(dist, qp, gp, qc, gc2)
    want2 = rank_oracle(dist, qp, gp, qc, gc2, 50)
    np.testing.assert_allclose(cmc2, want2[0], atol=1e-12)
    assert map2 == pytest.approx(want2[1], abs=1e-12)


def test_evaluate_rank_errors():
    dist = np.zeros((2, 3))
    with pytest.raises(ValueError, match="No query"):
        evaluate_rank(dist, [1, 2], [3, 3, 1], [0, 0], [0, 0, 0])   # q0's match: same camera
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(dist, [1, 2], [3, 3], [0, 0], [0, 1, 0])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(np.full((2, 3), np.nan), [1, 2], [1, 2, 1], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="max_rank"):
        evaluate_rank(dist, [1, 2], [1, 2, 1], [0, 0], [1, 1, 1], max_rank=0)


def test_benchmark_agrees_with_original_loop():
    r = run_eval_benchmark(num_q=60, num_g=300, seed=3, with_loop=True, repeats=1)
    assert r["max_cmc_diff"] < 1e-6 and r["map_diff"] == pytest.approx(0.0, abs=1e-12)
    assert 0.0 < r["mAP"] <= 1.0 and r["fast_s"] > 0


# ----------------------------------------------------------------------------- distances


@pytest.mark.parametrize("block", [metrics._BLOCK_ELEMENTS, 13])
def test_compute_distance_matrix(block, monkeypatch):
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", block)    # 13: one query row per chunk
    torch.manual_seed(0)
    qf, gf = torch.randn(7, 16, dtype=torch.float64) * 3, torch.randn(11, 16) * 3
    cos = compute_distance_matrix(qf, gf, "cosine")
    assert cos.shape == (7, 11) and cos.dtype == torch.float32
    want = torch.tensor([[1 - F.cosine_similarity(q, g.double(), dim=0) for g in gf]
                         for q in qf])
    torch.testing.assert_close(cos, want.float(), atol=1e-6, rtol=0)
    euc = compute_distance_matrix(qf, gf, "euclid")
    exact = torch.cdist(qf, gf.double(), compute_mode="donot_use_mm_for_euclid_dist")
    torch.testing.assert_close(euc, exact.float(), atol=1e-4, rtol=1e-5)
    assert torch.equal(euc.argsort(dim=1, stable=True), exact.argsort(dim=1, stable=True))
    # Identical vectors are at distance ~0 (clamped, no NaN from the sqrt): the float32
    # expansion leaves ~1e-7 * 2||g||^2 (~3e-5 here) on the squared distance, ~6e-3 after sqrt.
    self_d = compute_distance_matrix(gf, gf, "euclid")
    assert not torch.isnan(self_d).any() and self_d.diagonal().abs().max() < 3e-2
    with pytest.raises(ValueError, match="DISTANCE"):
        compute_distance_matrix(qf, gf, "manhattan")
    with pytest.raises(ValueError, match="same d"):
        compute_distance_matrix(qf, gf[:, :3])


# ----------------------------------------------------------------------------- attributes


def attr_oracle(preds, targets):
    accs, f1s = [], []
    for a in range(preds.shape[1]):
        rows = [i for i in range(len(preds)) if targets[i, a] >= 0]
        if not rows:
            accs.append(math.nan)
            f1s.append(math.nan)
            continue
        p, t = preds[rows, a], targets[rows, a]
        accs.append(float(np.mean(p == t)))
        per_class = []
        for k in sorted(set(p.tolist()) | set(t.tolist())):
            tp = int(np.sum((p == k) & (t == k)))
            fp = int(np.sum((p == k) & (t != k)))
            fn = int(np.sum((p != k) & (t == k)))
            per_class.append(2 * tp / (2 * tp + fp + fn))
        f1s.append(float(np.mean(per_class)))
    return accs, f1s


def test_attribute_metrics_match_loop_oracle():
    rng = np.random.default_rng(0)
    n, classes = 60, [5, 2, 9, 2, 3]
    targets = np.stack([rng.integers(0, c, n) for c in classes], axis=1)
    preds = np.where(rng.random(targets.shape) < 0.6, targets,
                     np.stack([rng.integers(0, c, n) for c in classes], axis=1))
    targets[rng.random(targets.shape) < 0.2] = -1     # unknowns
    targets[:, 3] = -1                                 # an attribute with no labels at all
    names = [f"a{i}" for i in range(len(classes))]
    relevant = [False, False, True, True, True]
    out = attribute_metrics(torch.from_numpy(preds), targets, names, relevant)
    accs, f1s = attr_oracle(preds, targets)
    for a, name in enumerate(names):
        got = out["per_attribute"][name]
        assert got["num_labelled"] == int((targets[:, a] >= 0).sum())
        if math.isnan(accs[a]):
            assert math.isnan(got["acc"]) and math.isnan(got["f1"])
        else:
            assert got["acc"] == pytest.approx(accs[a]) and got["f1"] == pytest.approx(f1s[a])
    assert out["mean_acc"] == pytest.approx(np.nanmean(accs))
    assert out["mean_f1"] == pytest.approx(np.nanmean(f1s))
    assert out["mean_acc_id_relevant"] == pytest.approx(np.mean([accs[2], accs[4]]))
    assert out["mean_f1_id_relevant"] == pytest.approx(np.mean([f1s[2], f1s[4]]))
    assert all(type(out[k]) is float for k in ("mean_acc", "mean_f1"))


def test_attribute_metrics_hand_example():
    # "gender": targets 0,0,1,1 ; preds 0,1,1,1: acc 3/4; F1 class0 = 2/(2+0+1) = 2/3,
    # class1 = 4/(4+1+0) = 4/5.
    # "hat": targets 0,0,0,-1 ; preds 0,0,2,0: acc 2/3; class 2 is only predicted and still
    # counts: F1 class0 = 4/(4+0+1) = 4/5, class2 = 0 -> 2/5.
    out = attribute_metrics(np.array([[0, 0], [1, 0], [1, 2], [1, 0]]),
                            np.array([[0, 0], [0, 0], [1, 0], [1, -1]]),
                            ["gender", "hat"], [True, False])
    assert out["per_attribute"]["hat"] == {"acc": pytest.approx(2 / 3),
                                           "f1": pytest.approx(2 / 5), "num_labelled": 3}
    assert out["mean_acc_id_relevant"] == pytest.approx(0.75)
    assert out["mean_f1_id_relevant"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert out["mean_f1"] == pytest.approx(((2 / 3 + 4 / 5) / 2 + 2 / 5) / 2)
    with pytest.raises(ValueError, match="one entry per attribute"):
        attribute_metrics(np.zeros((2, 2), int), np.zeros((2, 2), int), ["a"], [True])


def test_format_results_table():
    cmc = np.linspace(0.5, 0.99, 50)
    text = format_results_table(cmc, 0.4444, ranks=(1, 5))
    lines = text.splitlines()
    assert lines[0].split(" | ") == ["mAP  ", "R1   ", "R5"]
    assert lines[2].split() == ["44.4", "|", "50.0", "|", "54.0"]
    # Ranks past the curve read its last value.
    assert format_results_table([0.5, 0.75], 0.1, ranks=(5,)).splitlines()[2].endswith("75.0")


# ----------------------------------------------------------------------------- re-ranking


def test_smallest_k_stable_equals_stable_argsort():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 4, (30, 25)).astype(np.float32)       # heavy ties
    for k in (1, 2, 7, 25, 40):
        want = np.argsort(rows, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(smallest_k_stable(rows, k), want)


def _dists(qf, gf):
    d = lambda a, b: compute_distance_matrix(a, b, "euclid").numpy()  # noqa: E731
    return d(qf, gf), d(qf, qf), d(gf, gf)


@pytest.mark.parametrize("k1,k2,lam", [(5, 3, 0.3), (4, 1, 0.0), (20, 6, 0.3), (60, 80, 1.0)])
@pytest.mark.parametrize("ties", [False, True])
def test_re_ranking_matches_loop_oracle(k1, k2, lam, ties, monkeypatch):
    monkeypatch.setattr(reranking, "_BLOCK_ELEMENTS", 97)   # many small chunks
    rng = np.random.default_rng(k1 + 10 * k2 + ties)
    feats = rng.standard_normal((36, 4))
    feats = torch.from_numpy(feats.round() if ties else feats)
    qg, qq, gg = _dists(feats[:7], feats[7:])
    got = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam)
    assert got.shape == (7, 29) and got.dtype == np.float32
    np.testing.assert_allclose(got, rerank_oracle(qg, qq, gg, k1, k2, lam), atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_re_ranking_improves_clustered_toy_problem(seed):
    g = torch.Generator().manual_seed(seed)
    num_ids = 12
    centres = torch.randn(num_ids, 16, generator=g)
    q_pids, g_pids = np.repeat(np.arange(num_ids), 2), np.repeat(np.arange(num_ids), 6)
    qf = centres[q_pids] + 0.9 * torch.randn(len(q_pids), 16, generator=g)
    gf = centres[g_pids] + 0.9 * torch.randn(len(g_pids), 16, generator=g)
    q_cams, g_cams = np.zeros(len(q_pids)), np.ones(len(g_pids))
    qg, qq, gg = _dists(qf, gf)
    _, map_before = evaluate_rank(qg, q_pids, g_pids, q_cams, g_cams, 10)
    _, map_after = evaluate_rank(re_ranking(qg, qq, gg, k1=6, k2=3), q_pids, g_pids, q_cams,
                                 g_cams, 10)
    assert map_after > map_before + 0.03


def test_re_ranking_errors():
    with pytest.raises(ValueError, match="shapes"):
        re_ranking(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="k1"):
        re_ranking(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((3, 3)), k1=0)
