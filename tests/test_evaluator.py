"""engine.evaluator against a simple per-tracklet oracle: one forward per clip, pooled by hand.

Packing clips of several tracklets into one forward, the leftover clips of the last forward,
max/avg pooling, the clip-count division, attribute-logit averaging, feature normalisation,
both distances and re-ranking are each checked against code written the obvious way.
"""

import numpy as np
import pytest
import torch

import engine.evaluator as evaluator
from engine.evaluator import evaluate, extract_features
from modeling import VideoBaseline
from utils.metrics import evaluate_rank
from utils.reranking import re_ranking

pytestmark = pytest.mark.usefixtures("one_thread")

ATTR_LENS = [[3, 2], [4, 2]]
T, SIZE = 2, (32, 16)
N_ATTR = 4


def make_model(attr_lens=ATTR_LENS) -> VideoBaseline:
    torch.manual_seed(0)
    model = VideoBaseline(5, "resnet18", attr_lens=attr_lens, input_size=SIZE)
    model.train()   # non-trivial BN running statistics, then eval mode everywhere below
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, T, 3, *SIZE))
    return model.eval()


def make_tracklets(clip_counts, pids, camids, seed):
    """Loader items (clips (n, T, 3, H, W), pid, camid, attr_idx (N_ATTR,)), one per tracklet."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, T, 3, *SIZE, generator=g), pid, cam,
             torch.randint(0, 2, (N_ATTR,), generator=g))
            for n, pid, cam in zip(clip_counts, pids, camids)]


# 17 clips in all: 17 % 3 = 2 clips are left over for the last forward of 3
QUERY = make_tracklets([1, 4, 2, 5, 3, 2], [0, 1, 2, 3, 4, 1], [0, 0, 1, 1, 0, 1], seed=1)
GALLERY = make_tracklets([3, 1, 2, 4, 2, 1, 3, 2], [0, 1, 2, 3, 4, 0, 1, 9],
                         [1, 1, 0, 0, 1, 0, 0, 1], seed=2)


@torch.no_grad()
def oracle_features(model, tracklets, pool):
    """Per tracklet: each clip alone through the model, then mean or max over its clips."""
    feats, logits = [], []
    for clips, *_ in tracklets:
        outs = [model(clips[i:i + 1]) for i in range(clips.shape[0])]
        f = torch.cat([o[0] for o in outs])                      # (n, D)
        feats.append(f.mean(0) if pool == "avg" else f.max(0).values)
        if outs[0][1] is not None:
            flat = torch.cat([torch.cat(o[1], 1) for o in outs])  # (n, sum of class counts)
            logits.append(flat.mean(0))
    return torch.stack(feats), (torch.stack(logits) if logits else None)


def oracle_distance(qf, gf, metric, feat_norm):
    qf, gf = qf.double(), gf.double()
    if feat_norm:
        qf, gf = qf / qf.norm(dim=1, keepdim=True), gf / gf.norm(dim=1, keepdim=True)
    if metric == "euclid":
        return torch.cdist(qf, gf).numpy()
    return (1 - (qf @ gf.T) / (qf.norm(dim=1)[:, None] * gf.norm(dim=1)[None])).numpy()


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("clips_per_batch", [1, 3, 128])
def test_extract_features_equals_the_per_tracklet_oracle(model, pool, clips_per_batch):
    out = extract_features(model, QUERY, torch.device("cpu"), clips_per_batch, pool)
    ref_feats, ref_logits = oracle_features(model, QUERY, pool)
    torch.testing.assert_close(out["feats"], ref_feats, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["attr_logits"], ref_logits, rtol=1e-5, atol=1e-5)
    assert out["pids"].tolist() == [t[1] for t in QUERY]
    assert out["camids"].tolist() == [t[2] for t in QUERY]
    np.testing.assert_array_equal(out["attr_targets"], torch.stack([t[3] for t in QUERY]))
    assert out["num_clips"] == sum(t[0].shape[0] for t in QUERY)


def test_compiled_extraction_equals_the_oracle_and_leaves_no_files(model, tmp_path,
                                                                   monkeypatch):
    """TEST.COMPILE: one graph for forwards of 3 clips, the leftover 2 padded; nothing written
    outside its temporary folder (the compiler's default cache folder is pointed here)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "default-cache"))
    compiled = evaluator.inference_model(model, compile_model=True)
    calls = []
    real = compiled._run
    monkeypatch.setattr(compiled, "_run", lambda x: calls.append(x.shape[0]) or real(x))
    out = extract_features(compiled, QUERY, torch.device("cpu"), 3, "avg", fold_bn=False)
    ref_feats, ref_logits = oracle_features(model, QUERY, "avg")
    torch.testing.assert_close(out["feats"], ref_feats, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["attr_logits"], ref_logits, rtol=1e-5, atol=1e-5)
    assert calls == [3] * 6 and out["num_clips"] == 17               # 17 = 5 x 3 + 2 padded
    assert compiled._compiled is not compiled.model                   # it did compile
    assert not (tmp_path / "default-cache").exists()


def test_compile_failure_falls_back_to_the_model(model, monkeypatch, caplog):
    def broken(module, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    compiled = evaluator.inference_model(model, compile_model=True)
    out = extract_features(compiled, QUERY, torch.device("cpu"), 3, "avg", fold_bn=False)
    torch.testing.assert_close(out["feats"], oracle_features(model, QUERY, "avg")[0],
                               rtol=1e-5, atol=1e-5)
    assert "torch.compile failed (RuntimeError: no C++ compiler)" in caplog.text


def test_extract_features_without_attributes():
    model = make_model(attr_lens=None)
    out = extract_features(model, GALLERY, torch.device("cpu"), 3, "avg")
    ref_feats, _ = oracle_features(model, GALLERY, "avg")
    torch.testing.assert_close(out["feats"], ref_feats, rtol=1e-5, atol=1e-5)
    assert out["attr_logits"] is None


def test_the_pools_differ_on_these_tracklets(model):
    """So that the oracle comparisons above can tell avg, max (and min) apart."""
    avg, _ = oracle_features(model, QUERY, "avg")
    mx, _ = oracle_features(model, QUERY, "max")
    assert (mx - avg).abs().max() > 1e-2


@pytest.mark.parametrize("metric", ["cosine", "euclid"])
@pytest.mark.parametrize("feat_norm", [True, False])
@pytest.mark.parametrize("re_rank", [False, True])
def test_evaluate_equals_ranking_the_oracle_distances(model, monkeypatch, metric, feat_norm,
                                                      re_rank):
    seen = {}

    def recording_evaluate_rank(distmat, *args):
        seen["distmat"] = distmat
        return evaluate_rank(distmat, *args)

    monkeypatch.setattr(evaluator, "evaluate_rank", recording_evaluate_rank)
    res = evaluate(model, QUERY, GALLERY, torch.device("cpu"), metric=metric,
                   feat_norm=feat_norm, re_rank=re_rank, clips_per_batch=3, pool="avg",
                   attr_lens=ATTR_LENS, max_rank=5)
    qf, q_logits = oracle_features(model, QUERY, "avg")
    gf, g_logits = oracle_features(model, GALLERY, "avg")
    dist = oracle_distance(qf, gf, metric, feat_norm)
    if re_rank:
        dist = re_ranking(dist, oracle_distance(qf, qf, metric, feat_norm),
                          oracle_distance(gf, gf, metric, feat_norm))
    np.testing.assert_allclose(seen["distmat"], dist, rtol=1e-4, atol=1e-5)
    q_pids, q_cams = np.array([t[1] for t in QUERY]), np.array([t[2] for t in QUERY])
    g_pids, g_cams = np.array([t[1] for t in GALLERY]), np.array([t[2] for t in GALLERY])
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, 5)
    assert res["mAP"] == pytest.approx(mAP, abs=1e-6)
    np.testing.assert_allclose(res["cmc"], cmc)
    assert (res["R1"], res["R5"]) == (pytest.approx(cmc[0]), pytest.approx(cmc[4]))
    # attribute accuracy from the argmax of the averaged logits of query + gallery
    logits = torch.cat([q_logits, g_logits])
    targets = torch.stack([t[3] for t in QUERY + GALLERY])
    preds = torch.stack([p.argmax(1) for p in logits.split([3, 2, 4, 2], 1)], 1)
    accuracy = (preds == targets).double().mean(0).numpy()
    got = np.array([a["acc"] for a in res["attr"]["per_attribute"].values()])
    np.testing.assert_allclose(got, accuracy)


def test_the_evaluate_settings_change_the_distances(model):
    """Each setting above changes the oracle's distance matrix here, so each is checked."""
    qf, _ = oracle_features(model, QUERY, "avg")
    gf, _ = oracle_features(model, GALLERY, "avg")
    euclid_raw = oracle_distance(qf, gf, "euclid", False)
    euclid_norm = oracle_distance(qf, gf, "euclid", True)
    cosine = oracle_distance(qf, gf, "cosine", True)
    assert not np.allclose(euclid_raw, euclid_norm, rtol=1e-3)
    assert not np.allclose(euclid_norm, cosine, rtol=1e-3)
    reranked = re_ranking(cosine, oracle_distance(qf, qf, "cosine", True),
                          oracle_distance(gf, gf, "cosine", True))
    assert not np.allclose(reranked, cosine, rtol=1e-3)


def test_channels_last_clips_concatenates_without_transposing_back():
    a, b = torch.randn(2, T, 3, *SIZE), torch.randn(3, T, 3, *SIZE)
    out = evaluator.channels_last_clips([a, b])
    assert torch.equal(out, torch.cat([a, b])) and out.permute(0, 1, 3, 4, 2).is_contiguous()
    assert evaluator.channels_last_clips([out]).data_ptr() == out.data_ptr()      # no copy
