"""Attribute encodings and decoding against loop oracles."""

import pytest
import torch

from data.attributes import (
    DUKE_SCHEMA,
    MARS_SCHEMA,
    decode_attribute_logits,
    encode_attributes,
    encode_bce,
)
from tests.helpers import MARS_ATTR_LENS

MARS_LENS = MARS_ATTR_LENS


def random_indices(lens, n, seed=0, unknown=True):
    g = torch.Generator().manual_seed(seed)
    flat = [c for grp in lens for c in grp]
    idx = torch.stack([torch.randint(0, c, (n,), generator=g) for c in flat], dim=1)
    if unknown:
        idx[0, 3] = -1
        idx[2] = -1
    return idx


def bce_oracle(idx, lens):
    out = []
    a = 0
    for grp in lens:
        rows = []
        for r in range(idx.shape[0]):
            row = []
            for j, c in enumerate(grp):
                onehot = [0.0] * c
                if idx[r, a + j] >= 0:
                    onehot[int(idx[r, a + j])] = 1.0
                row += onehot
            rows.append(row)
        out.append(torch.tensor(rows))
        a += len(grp)
    return out


@pytest.mark.parametrize("lens", [MARS_LENS, DUKE_SCHEMA.attr_lens])
def test_encode_bce_matches_loop(lens):
    idx = random_indices(lens, 5)
    got = encode_bce(idx, lens)
    want = bce_oracle(idx, lens)
    assert [g.shape for g in got] == [(5, sum(grp)) for grp in lens]
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    assert got[0][2].sum() == 0 and got[1][2].sum() == 0        # unknown row: all zeros


def test_encode_modes():
    idx = random_indices(MARS_LENS, 3, unknown=False)
    bce = encode_attributes(idx, MARS_LENS, "bce")
    assert [b.shape for b in bce] == [(3, 25), (3, 41)] and bce[0].dtype == torch.float32
    assert (bce[0].sum(dim=1) == 9).all() and (bce[1].sum(dim=1) == 12).all()
    mce = encode_attributes(idx, MARS_LENS, "mce")
    assert mce.dtype == torch.long and torch.equal(mce, idx)
    none = encode_attributes(idx, MARS_LENS, "none")
    assert none.shape == (3, 0) and none.dtype == torch.long
    assert encode_attributes(idx, None, "bce").shape == (3, 0)
    with pytest.raises(ValueError):
        encode_attributes(idx, MARS_LENS, "softmax")


def test_decode_attribute_logits_bce_and_mce():
    g = torch.Generator().manual_seed(1)
    flat = MARS_SCHEMA.flat_lens
    logits = [torch.randn(4, 25, generator=g), torch.randn(4, 41, generator=g)]
    got = decode_attribute_logits(logits, MARS_LENS, "bce")
    cat = torch.cat(logits, dim=1)
    want, a = [], 0
    for c in flat:                                              # loop oracle
        want.append([int(torch.argmax(cat[r, a:a + c])) for r in range(4)])
        a += c
    assert got.dtype == torch.long and got.tolist() == torch.tensor(want).T.tolist()
    heads = [torch.randn(4, c, generator=g) for c in flat]
    got = decode_attribute_logits(heads, MARS_LENS, "mce")
    assert got.tolist() == torch.stack([h.argmax(1) for h in heads], 1).tolist()
    idx = random_indices(MARS_LENS, 6, unknown=False)          # one-hot targets decode back
    assert torch.equal(decode_attribute_logits(encode_bce(idx, MARS_LENS), MARS_LENS, "bce"), idx)
    with pytest.raises(ValueError):
        decode_attribute_logits(heads[:-1], MARS_LENS, "mce")
    # "flat": the concatenation of either layout (the evaluator's averaged logits)
    flat_got = decode_attribute_logits(cat, MARS_LENS)
    assert flat_got.shape == (4, 21)
    assert torch.equal(flat_got, decode_attribute_logits(logits, MARS_LENS, "bce"))
    assert torch.equal(decode_attribute_logits(torch.cat(heads, 1), MARS_LENS, "flat"),
                       decode_attribute_logits(heads, MARS_LENS, "mce"))
    with pytest.raises(ValueError):
        decode_attribute_logits(cat[:, :-1], MARS_LENS, "flat")


def test_an_empty_attribute_cell_is_called_empty(tmp_path):
    import csv

    from data.attributes import MARS_SCHEMA, load_attribute_table
    from utils.errors import UserError

    path = tmp_path / "mars_attributes.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["person_id", "camera_id", "tracklets_id", *MARS_SCHEMA.names])
        w.writerow([1, 1, 1, *[0] * (len(MARS_SCHEMA.names) - 1), ""])
    with pytest.raises(UserError, match=r"line 2, column 'bottom type': the cell is empty\."):
        load_attribute_table(str(path), MARS_SCHEMA)
