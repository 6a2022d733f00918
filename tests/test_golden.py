"""Golden tests: our model computes what the original computes, for the same weights.

``../shared/reference/golden/`` holds the original's outputs and gradients for deterministic
weights (a pure function of each state-dict key and shape, ``weights.py`` there) on fixed clips;
its README says how to use them. Skipped when the folder is absent.
"""

import importlib.util

import pytest
import torch

from modeling import VideoBaseline
from tests.helpers import SHARED

GOLDEN = SHARED / "reference" / "golden"
CONFIGS = ["resnet18_bce_ATTR_TA", "resnet18_mce_ATTR_TA", "resnet18_none_TA",
           "resnet50_bce_ATTR_TA"]
OUTPUT_RTOL = 1e-4     # relative L2 error of every output tensor
GRAD_RTOL = 1e-3       # relative L2 error of the listed gradients and of every gradient norm
# Gradient norms are compared to GRAD_RTOL plus NOISE x the largest norm: norms below that are
# rounding noise (the README of the golden folder), and a few small ones are sums with heavy
# cancellation (attention_conv.bias: the net gradient is 250-400x smaller than the sum of the
# absolute per-position terms, so 1e-5 rounding of the terms is 2e-3 of the net).
NOISE = 1e-6


def rel_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).norm() / theirs.norm()).item()


@pytest.fixture(scope="module")
def golden_weights():
    """The ``weights.py`` module of the golden folder; skip when absent."""
    if not (GOLDEN / "weights.py").is_file():
        pytest.skip(f"golden outputs not found at {GOLDEN}")
    spec = importlib.util.spec_from_file_location("golden_weights", GOLDEN / "weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=CONFIGS)
def run(request, golden_weights):
    """Build the configuration, load the golden weights, run the README's protocol once."""
    path = GOLDEN / f"golden_{request.param}.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    golden = torch.load(path, weights_only=True)
    c = golden["config"]
    torch.manual_seed(0)
    model = VideoBaseline(
        c["num_classes"], backbone=c["MODEL.NAME"], last_stride=c["MODEL.LAST_STRIDE"],
        fusion_method=c["MODEL.FUSION_METHOD"], neck=c["MODEL.NECK"],
        neck_feat=c["TEST.NECK_FEAT"], attr_lens=c["attr_lens"] if c["ATTR_RECOG_ON"] else None,
        attribute_loss=c["DATASETS.ATTRIBUTE_LOSS"] or "bce",
        input_size=tuple(c["INPUT.SIZE_TRAIN"]))
    keys = list(model.state_dict())
    model.load_state_dict(golden_weights.golden_state_dict(model.state_dict()))
    x = golden_weights.golden_input()
    model.train()
    cls_score, global_feat, attr_logits = model(x)
    attr_logits = attr_logits or []
    loss = (cls_score.square().mean() + global_feat.square().mean()
            + sum(a.square().mean() for a in attr_logits))
    loss.backward()
    model.eval()
    with torch.no_grad():
        feat, eval_attr = model(x)
    return {"golden": golden, "keys": keys, "loss": loss.detach(),
            "train": {"cls_score": cls_score.detach(), "global_feat": global_feat.detach(),
                      "attr_logits": [a.detach() for a in attr_logits]},
            "eval": {"feat": feat, "attr_logits": eval_attr or []},
            "params": dict(model.named_parameters())}


def test_state_dict_keys(run):
    # the golden list is sorted; the order of the reference/*.txt lists is tested elsewhere
    assert sorted(run["keys"]) == list(run["golden"]["state_dict_keys"])


def test_train_outputs(run):
    golden = run["golden"]["train"]
    for name in ("cls_score", "global_feat"):
        assert rel_error(run["train"][name], golden[name]) < OUTPUT_RTOL, name
    assert len(run["train"]["attr_logits"]) == len(golden["attr_logits"])
    for k, (ours, theirs) in enumerate(zip(run["train"]["attr_logits"], golden["attr_logits"])):
        assert ours.shape == theirs.shape and rel_error(ours, theirs) < OUTPUT_RTOL, k
    assert run["loss"].item() == pytest.approx(float(run["golden"]["loss"]), rel=OUTPUT_RTOL)


def test_eval_outputs(run):
    golden = run["golden"]["eval"]
    assert rel_error(run["eval"]["feat"], golden["feat"]) < OUTPUT_RTOL
    # the original returns no attribute logits at eval in "bce" mode; we do (docs/behaviour.md)
    if golden["attr_logits"]:
        assert len(run["eval"]["attr_logits"]) == len(golden["attr_logits"])
        for ours, theirs in zip(run["eval"]["attr_logits"], golden["attr_logits"]):
            assert rel_error(ours, theirs) < OUTPUT_RTOL
    elif run["train"]["attr_logits"]:
        assert [a.shape for a in run["eval"]["attr_logits"]] == [
            a.shape for a in run["train"]["attr_logits"]]


def test_listed_gradients(run):
    params = run["params"]
    for name, theirs in run["golden"]["grads"].items():
        assert rel_error(params[name].grad, theirs) < GRAD_RTOL, name


def test_every_gradient_norm(run):
    norms = run["golden"]["grad_norms"]
    params = run["params"]
    assert set(norms) == {n for n, p in params.items() if p.requires_grad}
    floor = NOISE * max(norms.values())
    for name, theirs in norms.items():
        grad = params[name].grad
        ours = 0.0 if grad is None else grad.norm().item()
        assert abs(ours - theirs) <= GRAD_RTOL * theirs + floor, (name, ours, theirs)
