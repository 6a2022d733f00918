"""Video datasets and loaders: clip contents, encodings, determinism across workers, errors."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from config import load_cfg
from data import build_dataset, make_data_loaders
from data import video_dataset as vd
from data.attributes import encode_bce
from data.sampling import frame_order, sample_dense_clips, sample_random_clip
from data.transforms import read_image
from tests.helpers import ROOT, TINY_MARS_TRAIN, frame_value, write_tiny_mars
from utils.errors import UserError


@pytest.fixture(scope="module")
def tiny_mars(tmp_path_factory):
    return write_tiny_mars(tmp_path_factory.mktemp("loaders") / "mars")


def loader_opts(root, *opts) -> list[str]:
    return ["DATASETS.ROOT_DIR", str(root), "DATASETS.NAME", "mars", "DATASETS.SEQ_LEN", "4",
            "INPUT.SIZE_TRAIN", "[8, 4]", "INPUT.SIZE_TEST", "[8, 4]", "INPUT.PADDING", "0",
            "INPUT.PROB", "0.0", "INPUT.RE_PROB", "0.0", "INPUT.PIXEL_MEAN", "[0.0, 0.0, 0.0]",
            "INPUT.PIXEL_STD", "[1.0, 1.0, 1.0]", "DATASETS.SHUFFLE_FRAMES", "False",
            "DATALOADER.SAMPLER", "softmax_triplet", "DATALOADER.NUM_INSTANCE", "2",
            "SOLVER.SEQS_PER_BATCH", "4", "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu",
            "RANDOM_SEED", "7", *opts]


def make_cfg(root, *opts):
    return load_cfg(None, loader_opts(root, *opts))


def frame_numbers(clip):
    """Frame numbers (1-based) of a clip of solid grey frames, (..., 3, H, W) -> (...)."""
    level = clip.mean(dim=(-3, -2, -1)) * 255.0
    return torch.round((level - 5) / 10).long()


def test_train_items_follow_the_sampling_functions(tiny_mars):
    for shuffle in (False, True):
        cfg = make_cfg(tiny_mars, "DATASETS.SHUFFLE_FRAMES", str(shuffle))
        train_loader, *_ = make_data_loaders(cfg)
        ds = train_loader.dataset
        for index, (_, _, _, n) in enumerate(TINY_MARS_TRAIN):
            for seed in (1, 2, 3):
                clip, pid, camid, attrs = ds[(index, seed)]
                assert clip.shape == (4, 3, 8, 4)
                pos = sample_random_clip(n, 4, torch.Generator().manual_seed(seed))
                order = frame_order(n, [7, 0, index] if shuffle else None)
                assert frame_numbers(clip).tolist() == (order[pos] + 1).tolist()
                assert (pid, camid) == ds.tracklets[index][1:3]


def test_train_batches_and_attribute_encodings(tiny_mars):
    cfg = make_cfg(tiny_mars)
    train_loader, query_loader, gallery_loader, dataset = make_data_loaders(cfg)
    assert len(train_loader) == 3 * 2 // 4
    train_loader.batch_sampler.set_epoch(1)
    clips, pids, camids, attrs = next(iter(train_loader))
    assert clips.shape == (4, 4, 3, 8, 4) and pids.dtype == torch.long
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]
    rows = [i for i, _ in next(iter(train_loader.batch_sampler))]
    idx = torch.tensor([dataset.train[i][3] for i in rows])
    assert [a.shape for a in attrs] == [(4, 25), (4, 41)]
    for a, b in zip(attrs, encode_bce(idx, dataset.attr_lens), strict=True):
        assert torch.equal(a, b)
    assert camids.tolist() == [dataset.train[i][2] for i in rows]

    _, _, _, mce = next(iter(make_data_loaders(make_cfg(tiny_mars, "DATASETS.ATTRIBUTE_LOSS",
                                                        "mce"))[0]))
    assert mce.shape == (4, 21) and mce.dtype == torch.long
    loaders = make_data_loaders(make_cfg(tiny_mars, "ATTR_RECOG_ON", "False"))
    _, _, _, none = next(iter(loaders[0]))
    assert none.shape == (4, 0) and loaders[3].attr_lens is None
    _, _, _, q_attr = next(iter(loaders[1]))
    assert q_attr.shape == (0,)


def test_dense_test_items_decode_each_frame_once(tiny_mars, monkeypatch):
    cfg = make_cfg(tiny_mars, "DATASETS.TEST_MAX_SEQ_NUM", "200")
    _, query_loader, gallery_loader, dataset = make_data_loaders(cfg)
    assert len(query_loader) == 2 and len(gallery_loader) == 5
    calls = []
    real = vd.read_image
    monkeypatch.setattr(vd, "read_image", lambda p, r: calls.append(p) or real(p, r))
    for loader, tracklets in ((query_loader, dataset.query), (gallery_loader, dataset.gallery)):
        for (clips, pid, camid, attr_idx), t in zip(loader, tracklets, strict=True):
            n = len(t[0])
            expected = sample_dense_clips(n, 4, 200, 0) + 1
            assert clips.shape == (len(expected), 4, 3, 8, 4)
            assert frame_numbers(clips).tolist() == expected.tolist()
            assert (pid, camid) == (t[1], t[2])
            assert attr_idx.dtype == torch.long and attr_idx.tolist() == list(t[3])
            if pid == 0:
                assert (attr_idx == -1).all()
            assert sorted(calls) == sorted(t[0]) and len(calls) == n
            calls.clear()


def test_dense_window_and_evenly_test_sampling(tiny_mars):
    cfg = make_cfg(tiny_mars, "DATASETS.TEST_MAX_SEQ_NUM", "1", "DATASETS.SHUFFLE_FRAMES", "True")
    _, query_loader, _, dataset = make_data_loaders(cfg)
    ds = query_loader.dataset
    for index, t in enumerate(dataset.query):
        clips = ds[index][0]
        n = len(t[0])
        pos = sample_dense_clips(n, 4, 1, [7, 1, index, 1])
        assert clips.shape[0] == 1
        assert frame_numbers(clips).tolist() == (frame_order(n, [7, 1, index])[pos] + 1).tolist()
        assert torch.equal(clips, ds[index][0])                       # reproducible
    cfg = make_cfg(tiny_mars, "DATASETS.TEST_SAMPLE_METHOD", "evenly")
    clips = make_data_loaders(cfg)[1].dataset[0][0]
    assert frame_numbers(clips).tolist() == [[1, 2, 3, 4]]         # 5 frames -> stride 1


def epoch_batches(loader, epoch, start=0):
    loader.batch_sampler.set_epoch(epoch)
    if start:
        loader.batch_sampler.set_start(start)
    return [b[0] for b in loader]


def test_samples_are_pure_functions_of_seed_epoch_position(tiny_mars):
    """Same (seed, epoch, position) -> identical clips with 0 or 2 (persistent) workers."""
    aug = ["INPUT.PROB", "0.5", "INPUT.RE_PROB", "0.5", "INPUT.PADDING", "2",
           "DATASETS.SHUFFLE_FRAMES", "True", "SOLVER.SEQS_PER_BATCH", "2"]
    single = make_data_loaders(make_cfg(tiny_mars, *aug))[0]
    multi = make_data_loaders(make_cfg(tiny_mars, *aug, "DATALOADER.NUM_WORKERS", "2"))[0]
    assert multi.num_workers == 2 and multi.persistent_workers
    rng_before = torch.get_rng_state()
    ref = {e: epoch_batches(single, e) for e in (1, 2)}
    got = {e: epoch_batches(multi, e) for e in (1, 2)}       # same workers for both epochs
    assert torch.equal(rng_before, torch.get_rng_state())     # the global RNG is untouched
    for e in (1, 2):
        assert len(ref[e]) == len(got[e]) == 3
        for a, b in zip(ref[e], got[e], strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(ref[1][0], ref[2][0])
    fresh = make_data_loaders(make_cfg(tiny_mars, *aug))[0]
    resumed = epoch_batches(fresh, 2, start=1)                # resume mid-epoch 2
    assert len(resumed) == 2
    for a, b in zip(resumed, ref[2][1:], strict=True):
        assert torch.equal(a, b)


def test_loader_user_errors(tiny_mars, tmp_path):
    with pytest.raises(UserError, match=r"needs 4 identities .* has 3 identities"):
        make_data_loaders(make_cfg(tiny_mars, "SOLVER.SEQS_PER_BATCH", "8"))
    with pytest.raises(UserError, match=r"multiple of DATALOADER.NUM_INSTANCE"):
        make_data_loaders(make_cfg(tiny_mars, "SOLVER.SEQS_PER_BATCH", "5"))
    with pytest.raises(UserError, match="DATASETS.ROOT_DIR is empty"):
        build_dataset(make_cfg(""))
    with pytest.raises(UserError, match="required path"):
        build_dataset(make_cfg(tmp_path / "absent"))


def test_unreadable_image_is_named(tmp_path):
    root = write_tiny_mars(tmp_path / "mars")
    _, query_loader, _, dataset = make_data_loaders(make_cfg(root, "DATALOADER.READ_RETRIES", "1"))
    broken = dataset.query[1][0][1]
    with open(broken, "wb") as f:
        f.write(b"\x00 broken")
    it = iter(query_loader)
    next(it)
    with pytest.raises(UserError, match=rf"Cannot read image '{broken}'"):
        next(it)


def test_frames_of_a_clip_are_decoded_as_grey_levels(tiny_mars):
    """The helper above is sound: frame k decodes to k."""
    train = build_dataset(make_cfg(tiny_mars)).train
    levels = [np.asarray(read_image(p)).mean() for p in train[1][0]]
    assert np.allclose(levels, [frame_value(k) for k in range(1, 6)], atol=1.5)


def test_batches_equal_their_items_and_a_channels_first_oracle(tiny_mars):
    """A train batch (written in place by __getitems__, channels last) equals its items one
    by one, and a plain channels-first re-computation of the same draws: flip, zero pad and
    crop per frame, (x / 255 - mean) / std, erasing with PIXEL_MEAN."""
    aug = ["INPUT.PROB", "0.5", "INPUT.RE_PROB", "0.5", "INPUT.PADDING", "2",
           "INPUT.PIXEL_MEAN", "[0.485, 0.456, 0.406]", "INPUT.PIXEL_STD",
           "[0.229, 0.224, 0.225]", "DATASETS.SHUFFLE_FRAMES", "True"]
    loader = make_data_loaders(make_cfg(tiny_mars, *aug))[0]
    ds = loader.dataset
    loader.batch_sampler.set_epoch(3)
    items = next(iter(loader.batch_sampler))
    clips, pids, camids, attrs = next(iter(loader))
    assert clips.shape == (4, 4, 3, 8, 4) and clips.dtype == torch.float32
    assert clips.permute(0, 1, 3, 4, 2).is_contiguous()                     # channels last
    for b, item in enumerate(items):
        clip, pid, camid, attr = ds[item]
        assert torch.equal(clips[b], clip) and (pids[b], camids[b]) == (pid, camid)
        assert all(torch.equal(a[b], x) for a, x in zip(attrs, attr, strict=True))
        assert torch.allclose(clip, oracle_clip(ds, item), rtol=0, atol=1e-5)


def oracle_clip(ds, item):
    """The train clip of ``item`` recomputed channels first, one frame at a time, from the
    same generator draws as data.transforms (flips, offsets, then erasing)."""
    index, seed = item
    t = ds.transform
    g = torch.Generator().manual_seed(seed)
    n = len(ds.tracklets[index][0])
    pos = sample_random_clip(n, 4, g)
    order = frame_order(n, [7, 0, index])
    paths = [ds.tracklets[index][0][f] for f in order[pos]]
    x = torch.stack([read_image(p).float() for p in paths])                # (T, 3, H, W)
    flips = torch.rand(4, generator=g) < t.flip_prob
    offsets = (torch.rand(4, 2, generator=g) * (2 * t.padding + 1)).long()
    h, w = x.shape[-2:]
    out = []
    for k in range(4):
        frame = x[k].flip(-1) if flips[k] else x[k]
        padded = torch.nn.functional.pad(frame, [t.padding] * 4)
        i, j = offsets[k].tolist()
        out.append(padded[:, i:i + h, j:j + w])
    mean, std = torch.tensor(t.mean).view(3, 1, 1), torch.tensor(t.std).view(3, 1, 1)
    clip = (torch.stack(out) / 255 - mean) / std
    apply = torch.rand(4, generator=g) < t.erase_prob
    u, corner = torch.rand(4, 100, 2, generator=g), torch.rand(4, 2, generator=g)
    for k in range(4):
        if apply[k]:
            for a, r in u[k].tolist():
                area = (0.02 + 0.38 * a) * h * w
                aspect = 0.3 + (1 / 0.3 - 0.3) * r
                eh, ew = round((area * aspect) ** 0.5), round((area / aspect) ** 0.5)
                if eh < h and ew < w:
                    top = int(corner[k, 0] * (h - eh + 1))
                    left = int(corner[k, 1] * (w - ew + 1))
                    clip[k, :, top:top + eh, left:left + ew] = mean
                    break
    return clip



@pytest.mark.slow            # two subprocesses with loader workers
@pytest.mark.parametrize("stopped", [True, False], ids=["exits", "hangs without the handler"])
def test_a_process_whose_loaders_outlive_it_still_exits(tiny_mars, stopped):
    """Loader workers ignore SIGTERM (the interruption checkpoint needs them), and SIGTERM is
    how multiprocessing stops a process's remaining children at exit before it waits for them.
    A loader still referenced then (here: in a reference cycle, the collector off) must not
    make the process wait forever; without data.build's exit handler it does."""
    opts = loader_opts(tiny_mars, "DATALOADER.NUM_WORKERS", "1")
    code = f"""
import atexit, gc, sys
sys.path.insert(0, {str(ROOT)!r})
from config import load_cfg
import data.build
cfg = load_cfg(None, {opts!r})
train, query, gallery, _ = data.build.make_data_loaders(cfg)
next(iter(train)), next(iter(query))
if not {stopped!r}:
    atexit.unregister(data.build._stop_workers)
gc.disable()
cycle = [train, query, gallery]
cycle.append(cycle)
print("ready", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90 if stopped else 20)
        exited = True
    except subprocess.TimeoutExpired:
        exited = False
        os.killpg(proc.pid, signal.SIGKILL)      # the process and its workers
        out, _ = proc.communicate()
    assert out == "ready\n"
    assert exited == stopped
    if stopped:
        assert proc.returncode == 0
