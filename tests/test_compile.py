"""torch.compile in evaluation (TEST.COMPILE) and training (SOLVER.COMPILE), engine/compile.py.

- A training run evaluates every EVAL_PERIOD epochs with weights that changed in between: the
  evaluation's compiled forward is compiled once, computes with the current weights each time
  and keeps memory flat (ten evaluations; Dynamo's compile counter).
- Compiled training steps equal eager ones to float rounding (losses, weights, BatchNorm
  statistics), and a compile failure falls back to the eager module with one warning.

Most tests count compilations with Dynamo's ``CompileCounter`` backend (Dynamo traces, the
graph runs eagerly: seconds); the tests that need inductor itself compile a tiny model once.
"""

import copy
import logging
import os

import pytest
import torch
import torch.nn as nn
from torch._dynamo.testing import CompileCounter
from torch._dynamo.utils import counters

import engine.evaluator as evaluator
from config import load_cfg
from engine.compile import CompilerFiles, FallbackCompiled, compile_for_training
from engine.evaluator import extract_features
from layers import make_loss
from modeling import VideoBaseline, fold_batch_norms
from modeling.build import update_folded_weights

pytestmark = pytest.mark.usefixtures("one_thread")

ATTR_LENS = [[3, 2], [4, 2]]
T, SIZE = 2, (32, 16)
CPU = torch.device("cpu")


def make_model(attr_lens=ATTR_LENS, seed=0) -> VideoBaseline:
    torch.manual_seed(seed)
    model = VideoBaseline(5, "resnet18", attr_lens=attr_lens, input_size=SIZE)
    move_weights(model, torch.Generator().manual_seed(seed))
    return model.eval()


@torch.no_grad()
def move_weights(model: nn.Module, g: torch.Generator) -> None:
    """What training does between two evaluations: new BatchNorm running statistics (a
    train-mode forward) and new parameters."""
    model.train()
    model(torch.randn(4, T, 3, *SIZE, generator=g))
    for p in model.parameters():
        p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))
    model.eval()


def tracklets(counts=(2, 3, 1), seed=1):
    """Loader items (clips (n, T, 3, H, W), pid, camid, attr_idx); 6 clips: with 4 clips per
    forward, one full forward and a padded one of 2."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, T, 3, *SIZE, generator=g), i, i % 2, torch.zeros(4, dtype=torch.long))
            for i, n in enumerate(counts)]


def rss_bytes() -> int:
    """Resident memory of this process (/proc/self/statm: pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def counting_compile(monkeypatch):
    """torch.compile with Dynamo's CompileCounter backend (traced, then run eagerly)."""
    counter = CompileCounter()
    real = torch.compile

    def compile_(module, **kwargs):
        return real(module, backend=counter, dynamic=kwargs.get("dynamic"))

    monkeypatch.setattr(torch, "compile", compile_)
    return counter


# ----------------------------------------------------------------------------- evaluation
def test_ten_evaluations_compile_once_with_the_current_weights_and_flat_memory(
        counting_compile):
    """TEST.COMPILE in a training run (the MARS config evaluates 13 times): one compilation
    for all evaluations (Dynamo stops compiling after torch._dynamo.config.recompile_limit = 8
    recompilations), features equal to the eager model's with the weights of each evaluation,
    and no memory kept per evaluation (each cached graph used to keep a copy of the weights)."""
    torch._dynamo.reset()   # graphs of earlier tests in this process would be reused, not counted
    model, items = make_model(), tracklets()
    g = torch.Generator().manual_seed(3)
    graphs = counters["stats"]["unique_graphs"]
    rss = []
    for _ in range(10):
        move_weights(model, g)
        got = extract_features(model, items, CPU, 4, compile_model=True)
        ref = extract_features(model, items, CPU, 4, fold_bn=False)       # eager, unfolded
        torch.testing.assert_close(got["feats"], ref["feats"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got["attr_logits"], ref["attr_logits"], rtol=1e-5, atol=1e-5)
        rss.append(rss_bytes())
    assert counting_compile.frame_count == 1
    assert counters["stats"]["unique_graphs"] - graphs == 1
    # the model's weights are 45 MB (11.3 M float32): a copy kept per evaluation would show
    assert max(rss[1:]) - rss[1] < 10e6, [f"{r / 1e6:.0f} MB" for r in rss]


def test_the_compiled_copy_is_rebuilt_when_the_model_changes_shape(counting_compile):
    """Another state-dict layout (here: the model moved to float64) gets a new copy; the same
    layout keeps the copy."""
    model, items = make_model(), tracklets()
    first = evaluator.inference_model(model, compile_model=True)
    assert evaluator.inference_model(model, compile_model=True) is first
    model.double()
    second = evaluator.inference_model(model, compile_model=True)
    assert second is not first and next(second.model.parameters()).dtype == torch.float64
    items = [(c.double(), *rest) for c, *rest in items]
    torch.testing.assert_close(extract_features(model, items, CPU, 4, compile_model=True)["feats"],
                               extract_features(model, items, CPU, 4, fold_bn=False)["feats"])


class TinyClipNet(nn.Module):
    """Clips (n, T, 3, H, W) -> ((n, 4) features, None), like the model's eval forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        n, t = x.shape[:2]
        return torch.relu(self.conv(x.flatten(0, 1))).mean((2, 3)).view(n, t, -1).mean(1), None


class OtherTinyClipNet(TinyClipNet):
    """Another class: Dynamo keeps the graphs of a class's forward together, and a graph that
    takes the weights as inputs serves every instance of the class."""


@pytest.mark.slow            # inductor compiles (tens of seconds)
def test_the_reused_graph_takes_the_weights_as_inputs_a_frozen_one_does_not(tmp_path,
                                                                            monkeypatch):
    """Inductor (a tiny network: seconds): the graph of CompiledForward computes with the
    weights of each call; with ``freeze`` (evaluation-only runs) the weights are constants of
    the graph, stale once they change, which is why training-time evaluations do not freeze."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "default-cache"))
    x = torch.randn(3, T, 3, *SIZE)
    live_net, frozen_net = TinyClipNet().eval(), OtherTinyClipNet().eval()
    live = evaluator.CompiledForward(live_net)
    frozen = evaluator.CompiledForward(frozen_net, freeze=True)
    with torch.no_grad():
        for net, compiled in ((live_net, live), (frozen_net, frozen)):
            torch.testing.assert_close(compiled(x)[0], net(x)[0])
            net.conv.weight.mul_(2)
        torch.testing.assert_close(live(x)[0], live_net(x)[0])             # current weights
        assert (frozen(x)[0] - frozen_net(x)[0]).abs().max() > 1e-3           # frozen weights
    assert live.compiled and frozen.compiled
    assert not (tmp_path / "default-cache").exists()


def test_evaluation_only_runs_freeze_the_weights_in_a_graph_of_their_own(counting_compile,
                                                                         monkeypatch):
    """run_evaluation (--eval-only) evaluates once: frozen weights (faster on a CPU); the
    training-time evaluations' reused graph is another one."""
    model, items = make_model(), tracklets()
    reused = evaluator.inference_model(model, compile_model=True)
    frozen = evaluator.inference_model(model, compile_model=True, freeze=True)
    assert frozen is not reused and frozen.freeze and not reused.freeze
    assert frozen._forward.inductor_config["freezing"] is True
    assert reused._forward.inductor_config["freezing"] is False
    torch.testing.assert_close(extract_features(frozen, items, CPU, 4, fold_bn=False)["feats"],
                               extract_features(model, items, CPU, 4, fold_bn=False)["feats"],
                               rtol=1e-5, atol=1e-5)
    seen = {}
    monkeypatch.setattr(evaluator, "evaluate",
                        lambda *a, **kw: seen.update(kw) or {"seconds": 0.0})
    monkeypatch.setattr(evaluator, "RunRecorder", lambda *a, **kw: type(
        "Recorder", (), {"evaluation": lambda *a: None})())
    evaluator.run_evaluation(load_cfg(None, ["TEST.COMPILE", "True"]), model, items, items,
                             None, CPU, None)
    assert seen["freeze"] is True and seen["compile_model"] is True


def test_update_folded_weights_gives_the_current_models_features():
    model, (clips, *_) = make_model(), tracklets()[1]
    folded = fold_batch_norms(model)
    move_weights(model, torch.Generator().manual_seed(4))
    with torch.no_grad():
        stale = folded(clips)[0]
        update_folded_weights(folded, model)
        ref = model(clips)[0]
        assert (stale - ref).abs().max() > 1e-2          # the weights did change
        torch.testing.assert_close(folded(clips)[0], ref, rtol=1e-5, atol=1e-5)


def test_sync_batch_norms_are_folded_too():
    """MODEL.SYN_BN (DDP on GPUs): the SyncBatchNorm model's folded copy holds no SyncBatchNorm
    and no BatchNorm2d (every one folded; the BNNeck a BatchNorm1d) and gives the features of
    its BatchNorm twin."""
    twin, (clips, *_) = make_model(), tracklets()[1]
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(twin)).eval()
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == 23
    folded = fold_batch_norms(synced)
    kinds = {type(m) for m in folded.modules()}
    assert nn.SyncBatchNorm not in kinds and nn.BatchNorm2d not in kinds
    assert [type(m) for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            ] == [nn.BatchNorm1d]
    assert len(folded.bn_folds) == len(fold_batch_norms(twin).bn_folds) == 22
    with torch.no_grad():
        torch.testing.assert_close(folded(clips)[0], twin(clips)[0], rtol=1e-5, atol=1e-5)
        move_weights(synced, torch.Generator().manual_seed(5))
        update_folded_weights(folded, synced)
        torch.testing.assert_close(folded(clips)[0], synced(clips)[0], rtol=1e-5, atol=1e-5)
    assert all(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm))   # the model is left as it is


def test_compiled_forward_runs_larger_forwards_in_pieces(counting_compile):
    """A forward larger than the first (the compiled size) runs in pieces of that size: no
    second graph."""
    model = make_model()
    compiled = evaluator.inference_model(model, compile_model=True)
    small, large = tracklets((2,))[0][0], tracklets((7,))[0][0]
    with torch.no_grad():
        compiled(small)
        feats, attr = compiled(large)
        ref_feats, ref_attr = model(large)
    torch.testing.assert_close(feats, ref_feats, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(attr, 1), torch.cat(ref_attr, 1), rtol=1e-5, atol=1e-5)
    assert counting_compile.frame_count == 1


# ----------------------------------------------------------------------------- the wrapper
def test_fallback_compiled_warns_once_and_keeps_the_modules_state(monkeypatch, caplog):
    def broken(module, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no C++ compiler\nmore lines")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    module = nn.Linear(3, 2)
    wrapped = FallbackCompiled(module, "the thing", "X.COMPILE")
    x = torch.randn(4, 3)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            torch.testing.assert_close(wrapped(x), module(x))
    warnings = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert warnings == ["X.COMPILE: torch.compile failed (RuntimeError: no C++ compiler); the "
                        "thing runs uncompiled. Set X.COMPILE False to skip the attempt."]
    assert not wrapped.compiled and wrapped.state_dict().keys() == module.state_dict().keys()
    assert list(wrapped.parameters()) == list(module.parameters())


def test_the_projects_own_errors_are_no_compile_failures(monkeypatch):
    """A UserError from the model's code (wrong frame size, ...) propagates: the uncompiled
    model would raise it too."""
    from utils.errors import UserError

    def raising(module, **kwargs):
        def fail(*args, **kw):
            raise UserError("Use the same INPUT.SIZE_TEST as INPUT.SIZE_TRAIN.")
        return fail

    monkeypatch.setattr(torch, "compile", raising)
    wrapped = FallbackCompiled(nn.Identity(), "the thing", "X.COMPILE")
    with pytest.raises(UserError, match="INPUT.SIZE_TEST"):
        wrapped(torch.zeros(1))
    assert wrapped.compiled


def test_compiler_files_go_to_a_temporary_folder_removed_afterwards(monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/else")
    files = CompilerFiles()
    with files.active():
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == files.path and os.path.isdir(files.path)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/somewhere/else"
    files.cleanup()
    assert not os.path.exists(files.path)


# ----------------------------------------------------------------------------- training
def training_setup(dtype=torch.float32, eps=None):
    """A small resnet18 VideoBaseline in train mode, the real criterion of the default config
    (cross entropy, triplet, AITL, attribute BCE) and the config's optimizer (fused Adam; with
    ``eps`` if given), the model's weights in ``dtype``."""
    from data.attributes import MARS_SCHEMA
    from solver import make_optimizer

    cfg = load_cfg(None, ["MODEL.NAME", "resnet18", "INPUT.SIZE_TRAIN", "[32, 16]",
                          "INPUT.SIZE_TEST", "[32, 16]", "SOLVER.BASE_LR", "0.001"])
    torch.manual_seed(0)
    model = VideoBaseline(4, "resnet18", attr_lens=MARS_SCHEMA.attr_lens, input_size=SIZE)
    model.to(dtype)
    criterion = make_loss(cfg, 4, MARS_SCHEMA.attr_lens, feat_dim=model.feat_dim).to(dtype)
    optimizer = make_optimizer(cfg, model)
    for group in optimizer.param_groups:
        group["eps"] = group["eps"] if eps is None else eps
    return model.train(), criterion, optimizer


def training_batches(steps, dtype=torch.float32, seed=7):
    """Batches of 4 clips, 2 identities x 2 (the triplet and AITL terms need positives),
    with "bce" attribute targets of the MARS schema."""
    from data.attributes import MARS_SCHEMA

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        clips = torch.randn(4, T, 3, *SIZE, generator=g).to(dtype)
        pids = torch.tensor([0, 0, 1, 1])
        attrs = [torch.cat([nn.functional.one_hot(torch.randint(0, c, (4,), generator=g), c)
                            for c in lens], 1).to(dtype) for lens in MARS_SCHEMA.attr_lens]
        out.append((clips, pids, attrs))
    return out


def train_steps(model, criterion, optimizer, batches, forward=None, loss=None):
    """Trainer.run_step's order: forward, criterion, zero_grad, backward, optimizer step."""
    forward, loss = forward or model, loss or criterion
    totals = []
    for clips, pids, attrs in batches:
        losses = loss(forward(clips), pids, attrs)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        totals.append({k: v.detach() for k, v in losses.items()})
    return totals


@pytest.mark.slow            # inductor compiles (tens of seconds)
def test_compiled_training_steps_equal_the_eager_steps(tmp_path, monkeypatch):
    """SOLVER.COMPILE: three compiled steps (model and loss through compile_for_training,
    inductor) give the eager steps' losses, weights and BatchNorm running statistics to float
    rounding, and the compiler's files stay in its temporary folder.

    Conditioned so that no compared quantity is rounding noise. Adam steps each weight by
    about lr * g / (|g| + eps): a weight whose gradient is mere rounding noise (the attribute
    streams' conv bias before a BatchNorm; the many dead units of this tiny model, up to 2/3 of
    a layer with |g| < 1e-8) moves by up to lr in the noise's direction when the noise is not
    far below eps, so two correct implementations drift apart by lr a step (in float32, eager
    NCHW and eager channels_last already do). Hence the model runs in float64, and since the
    criterion computes its distances in float32 (gradient noise up to 3e-8 absolute with the
    loss compiled), eps = 1e-3: the noise then changes an update by at most lr * 3e-8 / eps =
    3e-8, against steps of 1e-3 (measured: weights equal to 2e-8, BatchNorm statistics, which
    move by about 1, to 1e-7, losses to 1.7e-7 relative: float32 rounding).
    """
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "default-cache"))
    batches = training_batches(3, torch.float64)
    eager, compiled = training_setup(torch.float64, 1e-3), training_setup(torch.float64, 1e-3)
    initial = {k: v.clone() for k, v in eager[0].state_dict().items()}
    eager_losses = train_steps(*eager, batches)
    forward = compile_for_training(compiled[0], "the model")
    loss = compile_for_training(compiled[1], "the loss")
    compiled_losses = train_steps(*compiled, batches, forward, loss)
    assert forward.compiled and loss.compiled
    for e, c in zip(eager_losses, compiled_losses):
        assert e.keys() == c.keys()
        for k in e:                  # (the criterion's terms are float32: its float32 distances)
            torch.testing.assert_close(c[k], e[k], rtol=1e-6, atol=1e-7)
    eager_state, compiled_state = eager[0].state_dict(), forward.state_dict()
    assert eager_state.keys() == compiled_state.keys() == initial.keys()
    moved = 0
    for k, v in eager_state.items():      # weights, BatchNorm running means and variances
        if v.is_floating_point():
            torch.testing.assert_close(compiled_state[k], v, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(compiled_state[k], v), k                  # num_batches_tracked
        moved += not torch.equal(v, initial[k])
    assert moved > 0.9 * len(initial)                  # the steps did train (lr 1e-3 a step)
    assert not (tmp_path / "default-cache").exists()


def test_compiled_training_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    def broken(module, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("InductorError: no working C++ compiler")
        return fail

    batches = training_batches(2)
    eager = training_setup()
    eager_losses = train_steps(*eager, batches)
    monkeypatch.setattr(torch, "compile", broken)
    model, criterion, optimizer = training_setup()
    forward = compile_for_training(model, "the model")
    with caplog.at_level(logging.WARNING):
        losses = train_steps(model, criterion, optimizer, batches, forward)
    assert not forward.compiled
    assert [r.getMessage() for r in caplog.records if "SOLVER.COMPILE" in r.getMessage()] == [
        "SOLVER.COMPILE: torch.compile failed (RuntimeError: InductorError: no working C++ "
        "compiler); the model runs uncompiled. Set SOLVER.COMPILE False to skip the attempt."]
    for e, c in zip(eager_losses, losses):
        torch.testing.assert_close(c["total"], e["total"], rtol=0, atol=0)
    for (k, v), w in zip(eager[0].state_dict().items(), model.state_dict().values()):
        assert torch.equal(v, w), k


def test_trainer_run_step_with_solver_compile_runs_the_compiled_model_and_loss(
        tiny_mars, tmp_path, monkeypatch):
    """SOLVER.COMPILE True through the real ``Trainer.run_step``: the model's forward and the
    criterion each go through ``torch.compile`` (Dynamo traces them; the ``CompileCounter``
    backend runs the captured graphs eagerly, so no C++ compiler is involved), and three steps
    give the eager trainer's losses and weights. SGD keeps the comparison well conditioned (its
    update is linear in the gradient: rounding noise in a gradient stays noise in the weight,
    where Adam would scale it to lr)."""
    import itertools

    from data import make_data_loaders
    from engine import Trainer
    from modeling import build_model
    from tests.helpers import tiny_opts

    torch._dynamo.reset()
    counter = CompileCounter()
    real_compile = torch.compile
    compiled_modules = []

    def counting_compile(module, **kwargs):
        compiled_modules.append(type(module).__name__)
        return real_compile(module, **{**kwargs, "backend": counter})

    def trainer(compiled: bool) -> tuple[Trainer, list]:
        cfg = load_cfg(None, [*tiny_opts(tiny_mars, tmp_path, 1), "SOLVER.OPTIMIZER_NAME", "SGD",
                              "SOLVER.BASE_LR", "0.01", "SOLVER.COMPILE", str(compiled)])
        torch.manual_seed(0)
        train, query, gallery, ds = make_data_loaders(cfg)
        model = build_model(cfg, ds.num_train_pids, ds.attr_lens, device=CPU)
        t = Trainer.from_config(cfg, model, (train, query, gallery), ds, CPU, None)
        train.batch_sampler.set_epoch(1)
        return t, list(itertools.islice(iter(train), 3))

    eager, batches = trainer(False)
    monkeypatch.setattr(torch, "compile", counting_compile)
    compiled, _ = trainer(True)
    assert compiled_modules == ["VideoBaseline", type(compiled.criterion).__name__]
    for batch in batches:
        e, c = eager.run_step(batch), compiled.run_step(batch)
        assert e.keys() == c.keys()
        for k in e:
            torch.testing.assert_close(c[k], e[k], rtol=1e-5, atol=1e-6)
    assert counter.frame_count >= 2          # the model's forward and the loss were captured
    assert compiled._forward.compiled and compiled._loss.compiled
    for (k, v), w in zip(eager.bare_model.state_dict().items(),
                         compiled.bare_model.state_dict().values(), strict=True):
        torch.testing.assert_close(w, v, rtol=1e-5, atol=1e-6, msg=k)
    torch._dynamo.reset()
