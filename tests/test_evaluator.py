"""engine.evaluator against a simple per-tracklet oracle: one forward per clip, pooled by hand.

Packing clips of several tracklets into one forward, the leftover clips of the last forward,
max/avg pooling, the clip-count division, attribute-logit averaging, feature normalisation,
both distances and re-ranking are each checked against code written the obvious way.
"""

import io
import json
import logging
import sys

import numpy as np
import pytest
import torch

import engine.evaluator as evaluator
import utils.metrics as metrics
import utils.pictures as pictures
from engine.evaluator import evaluate, extract_features
from engine.recorder import RunRecorder
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


@torch.no_grad()
def move_weights(model, seed):
    """What training does between two evaluations: new BatchNorm statistics and parameters."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    model(torch.randn(4, T, 3, *SIZE, generator=g))
    for p in model.parameters():
        p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))
    model.eval()


@pytest.mark.slow            # inductor compiles (tens of seconds)
def test_compiled_extraction_follows_the_weights_and_leaves_no_files(tmp_path, monkeypatch):
    """TEST.COMPILE (inductor): one graph for forwards of 3 clips, the leftover 2 padded;
    compiled once for two evaluations with other weights in between (the weights are inputs
    of the graph, not constants frozen into it), each equal to the oracle of its weights;
    nothing written outside its temporary folder (the compiler's default cache folder is
    pointed here)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()   # graphs of earlier tests in this process would be reused, not counted
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "default-cache"))
    model = make_model()
    graphs = counters["stats"]["unique_graphs"]
    for evaluation in range(2):
        compiled = evaluator.inference_model(model, compile_model=True)
        calls = []
        real = compiled._run
        compiled._run = lambda x, calls=calls, real=real: calls.append(x.shape[0]) or real(x)
        out = extract_features(compiled, QUERY, torch.device("cpu"), 3, "avg", fold_bn=False)
        del compiled._run
        ref_feats, ref_logits = oracle_features(model, QUERY, "avg")
        torch.testing.assert_close(out["feats"], ref_feats, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out["attr_logits"], ref_logits, rtol=1e-5, atol=1e-5)
        assert calls == [3] * 6 and out["num_clips"] == 17           # 17 = 5 x 3 + 2 padded
        assert compiled.compiled                                      # it did compile
        move_weights(model, seed=evaluation)
    assert counters["stats"]["unique_graphs"] - graphs == 1
    assert not (tmp_path / "default-cache").exists()


def test_compile_failure_falls_back_to_the_model(monkeypatch, caplog):
    def broken(module, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    model = make_model()         # not the fixture's: that one's compiled copy is kept
    compiled = evaluator.inference_model(model, compile_model=True)
    out = extract_features(compiled, QUERY, torch.device("cpu"), 3, "avg", fold_bn=False)
    torch.testing.assert_close(out["feats"], oracle_features(model, QUERY, "avg")[0],
                               rtol=1e-5, atol=1e-5)
    assert "torch.compile failed (RuntimeError: no C++ compiler)" in caplog.text
    assert not compiled.compiled


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

    monkeypatch.setattr(metrics, "evaluate_rank", recording_evaluate_rank)
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
    assert (res["R10"], res["R20"]) == (pytest.approx(cmc[4]),) * 2   # past the curve: its end
    assert list(res)[:5] == ["mAP", "R1", "R5", "R10", "R20"]   # the table's order
    # attribute accuracy from the argmax of the averaged logits of query + gallery
    logits = torch.cat([q_logits, g_logits])
    targets = torch.stack([t[3] for t in QUERY + GALLERY])
    preds = torch.stack([p.argmax(1) for p in logits.split([3, 2, 4, 2], 1)], 1)
    accuracy = (preds == targets).double().mean(0).numpy()
    got = np.array([a["acc"] for a in res["attr"]["per_attribute"].values()])
    np.testing.assert_allclose(got, accuracy)


def nearest_is_a_match(r: metrics.Retrieval) -> dict[str, float]:
    """An extra metric: the fraction of queries whose nearest gallery tracklet (any camera) has
    their identity."""
    nearest = r.distmat.argmin(axis=1)
    return {"NN": float((r.g_pids[nearest] == r.q_pids).mean())}


def test_a_registered_metric_reaches_the_results_records_table_and_curves(model, monkeypatch,
                                                                          tmp_path, caplog):
    monkeypatch.setattr(metrics, "RETRIEVAL_METRICS",
                        [*metrics.RETRIEVAL_METRICS, nearest_is_a_match])
    seen = {}

    def recording_evaluate_rank(distmat, *args):
        seen["distmat"] = distmat
        return evaluate_rank(distmat, *args)

    monkeypatch.setattr(metrics, "evaluate_rank", recording_evaluate_rank)
    res = evaluate(model, QUERY, GALLERY, torch.device("cpu"), clips_per_batch=3, max_rank=5)
    q_pids = np.array([t[1] for t in QUERY])
    g_pids = np.array([t[1] for t in GALLERY])
    expected = float((g_pids[seen["distmat"].argmin(1)] == q_pids).mean())
    assert list(res)[:6] == ["mAP", "R1", "R5", "R10", "R20", "NN"]
    assert res["NN"] == expected and 0 < expected < 1      # not a trivial value
    # the recorder: metrics.json, the logged table and TensorBoard's scalars list every metric
    drawn = []

    def keep_figure(fig, path):
        drawn.append(fig)
        return path

    monkeypatch.setattr(pictures, "_save", keep_figure)
    recorder = RunRecorder(str(tmp_path), tensorboard=False)
    with caplog.at_level(logging.INFO, logger="reid.train"):
        recorder.evaluation(3, res, "Validation results")
        recorder.close()
    record = json.loads((tmp_path / "metrics.json").read_text())["evaluations"]
    names = ("mAP", "R1", "R5", "R10", "R20", "NN")
    assert record == [{"epoch": 3, **{k: res[k] for k in names}}]
    table = metrics.format_metrics_table({k: res[k] for k in names})
    assert f"Validation results:\n{table}" in caplog.text
    assert table.splitlines()[0].split() == ["mAP", "|", "R1", "|", "R5", "|", "R10", "|",
                                             "R20", "|", "NN"]
    assert table.splitlines()[2].split()[-1] == f"{100 * expected:.1f}"
    # the curves: one line per metric, the extra one included, drawn at its values
    (figure,) = drawn
    ax_eval = figure.axes[2]
    assert [t.get_text() for t in ax_eval.get_legend().get_texts()] == list(names)
    assert ax_eval.get_lines()[-1].get_ydata().tolist() == [100 * expected]


def test_metrics_of_the_same_name_are_an_error(monkeypatch):
    monkeypatch.setattr(metrics, "RETRIEVAL_METRICS",
                        [*metrics.RETRIEVAL_METRICS, lambda r: {"R1": 0.0}])
    with pytest.raises(ValueError, match=r"repeats the name\(s\) \['R1'\]"):
        metrics.retrieval_metrics(np.array([[0.1, 0.5]]), [1], [1, 2], [0], [1, 1])


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


# ----------------------------------------------------------------------------- autocast
# unit roundoff u (half the distance from 1 to the next number): 2^-8 for bfloat16 (8
# significant bits), 2^-11 for float16 (11). Each autocast layer rounds its inputs to the dtype
# (relative error <= u); over the ~20 layers on the path of ResNet-18 the independent
# roundings add up like a random walk, about sqrt(20) u = 4.5 u (measured: 2.2-3.5 u at the
# worst tracklet). 16 u leaves a margin of four; a forward in float32 would be far below u / 10.
AUTOCAST_DTYPES = [torch.bfloat16, torch.float16]


def unit_roundoff(dtype) -> float:
    return torch.finfo(dtype).eps / 2


def relative_errors(got, ref):
    return (got - ref).norm(dim=1) / ref.norm(dim=1)


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES)
def test_extraction_under_cpu_autocast_is_within_the_dtypes_precision(model, dtype):
    """SOLVER.FP_16 evaluation (amp_settings: bfloat16 on a CPU with native bf16, or
    SOLVER.CPU_PRECISION): the forwards run under autocast on the CPU too, the features are
    pooled in float32, within 16 u of the float32 features (u: the dtype's unit roundoff)."""
    u = unit_roundoff(dtype)
    ref = extract_features(model, QUERY, torch.device("cpu"), 3)
    got = extract_features(model, QUERY, torch.device("cpu"), 3, amp_dtype=dtype)
    assert got["feats"].dtype == got["attr_logits"].dtype == torch.float32
    for key in ("feats", "attr_logits"):
        err = relative_errors(got[key], ref[key])
        assert u / 10 < err.max() < 16 * u, (key, err.max() / u)    # lower: autocast did run


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES)
def test_distances_are_float32_for_autocast_features(model, monkeypatch, dtype):
    """The distances are computed in float32 from features of any dtype, also inside an
    autocast region; evaluate under autocast ranks float32 distances close to float32's."""
    qf, gf = torch.randn(6, 32), torch.randn(8, 32)
    with torch.autocast("cpu", dtype=dtype):
        for metric in ("cosine", "euclid"):
            d = evaluator.query_gallery_distances(qf.to(dtype), gf.to(dtype), metric)
            assert d.dtype == np.float32
            np.testing.assert_array_equal(d, evaluator.query_gallery_distances(
                qf.to(dtype).float(), gf.to(dtype).float(), metric))
    seen = []
    monkeypatch.setattr(metrics, "evaluate_rank",
                        lambda distmat, *args: seen.append(distmat) or evaluate_rank(distmat,
                                                                                      *args))
    evaluate(model, QUERY, GALLERY, torch.device("cpu"), clips_per_batch=3, max_rank=5)
    evaluate(model, QUERY, GALLERY, torch.device("cpu"), clips_per_batch=3, max_rank=5,
             amp_dtype=dtype)
    assert seen[0].dtype == seen[1].dtype == np.float32
    # cosine distances 1 - cos of features within 16 u: within 2 x 16 u
    assert 0 < np.abs(seen[1] - seen[0]).max() < 32 * unit_roundoff(dtype)


# ----------------------------------------------------------------------------- progress
class _RecordingBar(evaluator.tqdm):
    """The evaluator's tqdm, recording each bar: whether it is shown, its total, its count after
    every update."""

    bars: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shown = not self.disable        # (close() sets disable)
        self.counts = []
        _RecordingBar.bars.append(self)

    def update(self, n=1):
        out = super().update(n)
        self.counts.append(self.n)
        return out


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def bars(monkeypatch):
    _RecordingBar.bars = []
    monkeypatch.setattr(evaluator, "tqdm", _RecordingBar)
    return _RecordingBar.bars


def test_extraction_shows_progress_on_a_terminal(model, bars, monkeypatch):
    """A bar on stderr in tracklets (rate, time left), counting a tracklet once all its clips
    went through a forward: QUERY's clip counts 1 4 2 5 3 2 in forwards of 3 clips complete 1,
    2, 3, 4, 5, 6 tracklets."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    extract_features(model, QUERY, torch.device("cpu"), 3, desc="query features")
    (bar,) = bars
    assert bar.shown and bar.total == len(QUERY) == 6
    assert bar.counts == [1, 2, 3, 4, 5, 6] and bar.n == bar.total
    assert "query features" in terminal.getvalue() and "tracklet" in terminal.getvalue()


def test_extraction_is_quiet_when_stderr_is_no_terminal(model, bars, capsys):
    evaluate(model, QUERY, GALLERY, torch.device("cpu"), clips_per_batch=3, max_rank=5)
    assert [b.shown for b in bars] == [False, False] and capsys.readouterr().err == ""
    extract_features(model, QUERY, torch.device("cpu"), 3, progress=True)   # forced on
    assert bars[-1].shown and bars[-1].n == 6 and "0/6 [" in capsys.readouterr().err
    extract_features(model, QUERY, torch.device("cpu"), 3, progress=False)
    assert not bars[-1].shown


def test_extraction_shows_no_progress_on_other_ranks(model, bars, monkeypatch):
    monkeypatch.setattr(evaluator, "is_main_process", lambda: False)
    extract_features(model, QUERY, torch.device("cpu"), 3, progress=True)
    assert not bars[-1].shown
