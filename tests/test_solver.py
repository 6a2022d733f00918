"""Optimizer groups and the per-epoch warmup multi-step schedule."""

from bisect import bisect_right

import pytest
import torch
import torch.nn as nn

from config import get_cfg, load_cfg
from layers import make_loss
from solver import (
    CenterSGD,
    WarmupMultiStepLR,
    build_optimizer,
    make_center_optimizer,
    make_optimizer,
    make_scheduler,
)
from tests.helpers import ROOT
from utils.errors import UserError


def small_model() -> nn.Module:
    """A float64 Linear -> BatchNorm (frozen bias, like the BNNeck) -> Linear with bias.

    Well conditioned for comparing optimizers: every trainable parameter has a real gradient.
    (A bias right before a BatchNorm would not: the normalisation removes it, so its gradient
    is rounding noise, which Adam normalises into lr-sized steps of arbitrary sign; the
    comparison would then depend on the CPU's vector kernels.) float64 keeps the rounding of
    the compared implementations far below the tolerances.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3), nn.Linear(3, 2))
    model[1].bias.requires_grad_(False)
    return model.double()


def batch() -> torch.Tensor:
    return torch.randn(8, 4, dtype=torch.float64)


def group_of(opt: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    (group,) = [g for g in opt.param_groups if any(p is param for p in g["params"])]
    return group


# ----------------------------------------------------------------------------- optimizer
def test_optimizer_bias_and_weight_groups():
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR, cfg.SOLVER.BIAS_LR_FACTOR = 0.01, 2
    cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.WEIGHT_DECAY_BIAS = 5e-4, 0.0
    model = small_model()
    opt = make_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.Adam)
    params = [p for g in opt.param_groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(params) == len(trainable) == 4
    assert {id(p) for p in params} == {id(p) for p in trainable}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        g = group_of(opt, p)
        if "bias" in name:
            assert (g["lr"], g["weight_decay"]) == (0.02, 0.0), name
        else:
            assert (g["lr"], g["weight_decay"]) == (0.01, 5e-4), name
    assert len(opt.param_groups) == 2


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_grouped_update_equals_one_group_per_parameter(name):
    """The original's layout (one group per parameter, default kernels) gives the same steps."""
    ours_model, ref_model = small_model(), small_model()
    opt = build_optimizer(ours_model, name, 0.01, 5e-4, bias_lr_factor=2,
                          weight_decay_bias=1e-3, momentum=0.9)
    groups = []
    for pname, p in ref_model.named_parameters():
        if p.requires_grad:
            bias = "bias" in pname
            groups.append({"params": [p], "lr": 0.02 if bias else 0.01,
                           "weight_decay": 1e-3 if bias else 5e-4})
    ref = (torch.optim.SGD(groups, momentum=0.9, foreach=False) if name == "SGD"
           else torch.optim.Adam(groups, foreach=False))
    x = batch()
    for _ in range(3):
        for model, o in ((ours_model, opt), (ref_model, ref)):
            o.zero_grad()
            model(x).pow(2).sum().backward()
            o.step()
    for p, q in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert not torch.equal(ours_model[0].weight, small_model()[0].weight)


def mirrored_groups(opt: torch.optim.Optimizer, model: nn.Module, twin: nn.Module) -> list:
    """The (lr, weight decay) groups of ``opt`` over the matching parameters of ``twin``."""
    index = {id(p): i for i, p in enumerate(model.parameters())}
    twin_params = list(twin.parameters())
    return [{"params": [twin_params[index[id(p)]] for p in g["params"]], "lr": g["lr"],
             "weight_decay": g["weight_decay"]} for g in opt.param_groups]


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD", "Adagrad", "RMSprop"])
def test_fused_kernels_give_the_same_parameters(name):
    """Fused kernels where the optimizer has them (a speed-up only): the same parameters after a
    few steps as torch's per-parameter loop."""
    ours_model, ref_model = small_model(), small_model()
    opt = build_optimizer(ours_model, name, 0.01, 5e-4, bias_lr_factor=2, momentum=0.9)
    assert opt.defaults.get("fused") is (None if name == "RMSprop" else True)
    extra = {"momentum": 0.9} if name == "SGD" else {}
    ref = type(opt)(mirrored_groups(opt, ours_model, ref_model), foreach=False, **extra)
    x = batch()
    for _ in range(5):
        for model, o in ((ours_model, opt), (ref_model, ref)):
            o.zero_grad()
            model(x).pow(2).sum().backward()
            o.step()
    for p, q in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert not torch.equal(ours_model[0].weight, small_model()[0].weight)


def test_sgd_gets_momentum():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER_NAME, cfg.SOLVER.MOMENTUM = "SGD", 0.7
    opt = make_optimizer(cfg, small_model())
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["momentum"] == 0.7 for g in opt.param_groups)


def test_unknown_optimizer_is_a_user_error():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER_NAME = "adam"
    with pytest.raises(UserError, match="SOLVER.OPTIMIZER_NAME") as e:
        make_optimizer(cfg, small_model())
    assert "Did you mean 'Adam'" in str(e.value)
    assert "SGD" in str(e.value) and "AdamW" in str(e.value)
    cfg.SOLVER.OPTIMIZER_NAME = "LBFGS"
    with pytest.raises(UserError, match="unknown optimizer 'LBFGS'"):
        make_optimizer(cfg, small_model())


def test_center_optimizer_only_with_center_loss():
    cfg = get_cfg()
    assert make_center_optimizer(cfg, make_loss(cfg, 5)) is None
    cfg.SOLVER.USE_CENTER_LOSS = True
    cfg.MODEL.IF_WITH_CENTER, cfg.MODEL.METRIC_LOSS_TYPE = "yes", "triplet_center"
    crit = make_loss(cfg, 5, feat_dim=6)
    opt = make_center_optimizer(cfg, crit)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == cfg.SOLVER.CENTER_LR
    assert opt.param_groups[0]["params"][0] is crit.center_loss.centers
    assert isinstance(opt, CenterSGD) and opt.loss_weight == cfg.SOLVER.CENTER_LOSS_WEIGHT
    crit.center_weight = 0.25                 # the criterion's own weight is the one undone
    assert make_center_optimizer(cfg, crit).loss_weight == 0.25
    # the state dict (checkpoints) is a plain fused SGD's
    plain = torch.optim.SGD(crit.center_loss.parameters(), lr=cfg.SOLVER.CENTER_LR, fused=True)
    assert opt.state_dict() == plain.state_dict()


def _centre_grads(seed: int = 3) -> tuple[nn.Parameter, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (nn.Parameter(torch.randn(5, 4, generator=g)),
            torch.randn(5, 4, generator=g) * 1e-3)


def _backward(centres, grad, scaler=None):
    """Gradient ``grad`` on the centres (times the scale with a grad scaler)."""
    loss = (centres * grad).sum()
    (loss if scaler is None else scaler.scale(loss)).backward()


def _old_centre_step(centres, grad, weight, lr, scaler=None):
    """The trainer's former centre update: (unscale,) rescale by 1 / weight, then SGD."""
    opt = torch.optim.SGD([centres], lr=lr, fused=True)
    _backward(centres, grad, scaler)
    if scaler is not None:
        scaler.unscale_(opt)
    torch._foreach_mul_([centres.grad], 1.0 / max(weight, 1e-12))
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    return centres.detach().clone(), centres.grad.clone()


@pytest.mark.parametrize("weight", [0.0005, 0.3, 0.0])
@pytest.mark.parametrize("scaled", [False, True])
def test_center_optimizer_step_equals_rescale_then_sgd(weight, scaled):
    lr = 0.5
    a, grad = _centre_grads()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0) if scaled else None
    old, old_grad = _old_centre_step(a, grad, weight, lr, scaler)
    b, _ = _centre_grads()
    opt = CenterSGD([b], lr=lr, loss_weight=weight)
    if scaled:
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        _backward(b, grad, scaler)
        scaler.unscale_(opt)
        scaler.step(opt)
        scaler.update()
    else:
        _backward(b, grad)
        opt.step()
    assert torch.equal(b.detach(), old) and torch.equal(b.grad, old_grad)
    assert not torch.equal(old, _centre_grads()[0].detach())        # it moved


def test_center_optimizer_skipped_step_keeps_the_centres():
    c, grad = _centre_grads()
    before = c.detach().clone()
    opt = CenterSGD([c], lr=0.5, loss_weight=0.0005)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    _backward(c, grad, scaler)
    c.grad[0, 0] = float("inf")
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    assert torch.equal(c.detach(), before) and scaler.get_scale() == 512.0
    with pytest.raises(ValueError, match="closure"):
        opt.step(lambda: 0.0)
    opt.zero_grad()
    opt.step()                                       # no gradient: nothing to rescale
    assert torch.equal(c.detach(), before)


# ----------------------------------------------------------------------------- schedule
def paper_factor(e: int) -> float:
    """factor(e) of docs/behaviour.md#learning-rate-schedule with the paper's settings."""
    w = 0.01 * (1 - e / 10) + e / 10 if e < 10 else 1.0
    return w * 0.3 ** bisect_right([70, 140, 210, 310, 410], e)


def test_paper_schedule_every_epoch():
    cfg = load_cfg(str(ROOT / "configs" / "softmax_triplet_tlaw.yml"))
    cfg.defrost()
    cfg.SOLVER.BIAS_LR_FACTOR = 2            # two groups, both scaled alike
    model = small_model()
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt)
    assert sched.last_epoch == 0
    base = {id(g["params"][0]): g["lr"] for g in opt.param_groups}
    assert sorted(base.values()) == pytest.approx([0.00035 * 0.01, 0.0007 * 0.01])
    lrs = []
    for epoch in range(1, cfg.SOLVER.MAX_EPOCHS + 1):
        sched.step()                          # at the start of the epoch
        assert sched.last_epoch == epoch
        for g in opt.param_groups:
            scale = 2 if any("bias" in n for n, p in model.named_parameters()
                             if p is g["params"][0]) else 1
            assert g["lr"] == pytest.approx(0.00035 * scale * paper_factor(epoch), rel=1e-12)
        lrs.append(group_of(opt, model[0].weight)["lr"])
    assert len(lrs) == 500
    pinned = {1: 0.00035 * 0.109, 9: 0.00035 * 0.901, 10: 0.00035, 69: 0.00035,
              70: 0.00035 * 0.3, 139: 0.00035 * 0.3, 140: 0.00035 * 0.09,
              410: 0.00035 * 0.3 ** 5, 500: 0.00035 * 0.3 ** 5}
    for epoch, lr in pinned.items():
        assert lrs[epoch - 1] == pytest.approx(lr, rel=1e-12), epoch


def test_constant_warmup_and_no_warmup():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupMultiStepLR(opt, [3], gamma=0.5, warmup_factor=0.25, warmup_iters=2,
                              warmup_method="constant")
    got = []
    for _ in range(4):
        sched.step()
        got.append(opt.param_groups[0]["lr"])
    assert got == [0.25, 1.0, 0.5, 0.5]
    sched = WarmupMultiStepLR(opt, [], warmup_iters=0)
    assert [sched.lr_factor(e) for e in (0, 1, 100)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("kwargs, match", [
    ({"milestones": [40, 30]}, "strictly increasing"),
    ({"milestones": [30], "warmup_method": "cosine"}, "linear"),
    ({"milestones": [30], "gamma": 0.0}, "gamma"),
])
def test_scheduler_validates_arguments(kwargs, match):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=match):
        WarmupMultiStepLR(opt, **kwargs)


def test_make_scheduler_error_names_the_keys():
    cfg = get_cfg()
    cfg.SOLVER.STEPS = (55, 30)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(UserError, match="SOLVER.STEPS"):
        make_scheduler(cfg, opt)


def test_scheduler_resumes_from_state_dict():
    cfg = load_cfg(str(ROOT / "configs" / "softmax_triplet_tlaw.yml"))
    opt = make_optimizer(cfg, small_model())
    sched = make_scheduler(cfg, opt)
    for _ in range(137):
        sched.step()
    state, opt_state = sched.state_dict(), opt.state_dict()

    opt2 = make_optimizer(cfg, small_model())
    sched2 = make_scheduler(cfg, opt2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 137
    assert sched2.get_last_lr() == sched.get_last_lr()
    for epoch in range(138, 501):
        sched.step()
        sched2.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        assert opt2.param_groups[0]["lr"] == pytest.approx(0.00035 * paper_factor(epoch),
                                                           rel=1e-12)
