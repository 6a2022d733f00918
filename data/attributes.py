"""Attribute schemas of MARS and DukeMTMC-VideoReID, the CSV reader and the two encodings.

Every attribute is a class index (0-based, as in the CSV files). The attributes of a dataset
form two groups (SPEC §2): group 1 holds the 9 ID-irrelevant attributes (motion, pose, ...),
group 2 the ID-relevant ones (clothes, bags, gender, ...). ``attr_lens`` lists the class
count of every attribute, per group, e.g. MARS ``[[5,6,2,2,2,2,2,2,2],[9,10,4,2,2,2,2,2,2,2,2,2]]``.

Encodings (DATASETS.ATTRIBUTE_LOSS):

* ``"bce"``: per group, the one-hot vectors of its attributes concatenated (MARS 25 + 41
  floats, Duke 25 + 33); an unknown attribute (-1) is all zeros.
* ``"mce"``: one class index per attribute, (n_attr,) int64.

Example::

    table = load_attribute_table("data/mars/mars_attributes.csv", MARS_SCHEMA)
    row = table[(1, 2, 58)]                  # (pid, 1-based camera, tracklet number)
    onehots = encode_bce(torch.tensor([row]), MARS_SCHEMA.attr_lens)   # [(1, 25), (1, 41)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from utils.errors import UserError

__all__ = [
    "AttributeSchema",
    "DUKE_SCHEMA",
    "KEY_COLUMNS",
    "MARS_SCHEMA",
    "SCHEMAS",
    "decode_attribute_logits",
    "encode_attributes",
    "encode_bce",
    "load_attribute_table",
    "resolve_columns",
]

KEY_COLUMNS = ("person_id", "camera_id", "tracklets_id")

AttributeKey = tuple[int, int, int]


@dataclass(frozen=True)
class AttributeSchema:
    """Names and class counts of a dataset's attributes, in CSV column order.

    Attributes:
        groups: the attribute names of each group (ID-irrelevant, then ID-relevant).
        lens: the class count of each attribute, per group (same nesting as ``groups``).
        aliases: other CSV spellings accepted for a column, ``{name: (alias, ...)}``.
    """

    groups: tuple[tuple[str, ...], ...]
    lens: tuple[tuple[int, ...], ...]
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def names(self) -> list[str]:
        """Flat list of the attribute names in CSV order."""
        return [n for g in self.groups for n in g]

    @property
    def attr_lens(self) -> list[list[int]]:
        """Class counts per group, as nested lists (the ``attr_lens`` contract)."""
        return [list(g) for g in self.lens]

    @property
    def flat_lens(self) -> list[int]:
        """Class count of every attribute in CSV order."""
        return [n for g in self.lens for n in g]


_IRRELEVANT = ("motion", "pose", "occlusion", "cut-out", "multi-person", "background-dominant",
               "target-change", "target-miss", "wrong-target")
_IRRELEVANT_LENS = (5, 6, 2, 2, 2, 2, 2, 2, 2)

MARS_SCHEMA = AttributeSchema(
    groups=(_IRRELEVANT,
            ("top color", "bottom color", "age", "top length", "bottom length", "shoulder bag",
             "backpack", "hat", "hand bag", "hair", "gender", "bottom type")),
    lens=(_IRRELEVANT_LENS, (9, 10, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2)),
)

# The real duke_attributes.csv spells the fifth column "muti-person"; both spellings are read.
DUKE_SCHEMA = AttributeSchema(
    groups=(("motion", "pose", "occlusion", "cut-out", "muti-person") + _IRRELEVANT[5:],
            ("backpack", "bag", "handbag", "boots", "gender", "hat", "shoes", "top",
             "bottom color", "top color")),
    lens=(_IRRELEVANT_LENS, (2, 2, 2, 2, 2, 2, 2, 2, 8, 9)),
    aliases=(("muti-person", ("multi-person",)),),
)

SCHEMAS: dict[str, AttributeSchema] = {"mars": MARS_SCHEMA, "duke": DUKE_SCHEMA}


def resolve_columns(header: Sequence[str], schema: AttributeSchema
                    ) -> tuple[list[str | None], list[str]]:
    """Find the key and attribute columns of a CSV header (accepting the schema's aliases).

    Args:
        header: the CSV's column names (stripped).
        schema: the dataset's :class:`AttributeSchema`.

    Returns:
        (the header name of each expected column, :data:`KEY_COLUMNS` then ``schema.names``,
        None where absent; the expected names that are absent).
    """
    aliases = dict(schema.aliases)
    present = set(header)
    columns, missing = [], []
    for name in (*KEY_COLUMNS, *schema.names):
        found = next((c for c in (name, *aliases.get(name, ())) if c in present), None)
        if found is None:
            missing.append(name)
        columns.append(found)
    return columns, missing


def load_attribute_table(csv_path: str, schema: AttributeSchema) -> dict[AttributeKey, tuple]:
    """Read and validate an attribute CSV into a lookup table.

    Args:
        csv_path: the CSV file (``person_id, camera_id, tracklets_id`` and the attributes).
        schema: the dataset's :class:`AttributeSchema`; extra CSV columns are ignored.

    Returns:
        dict ``(pid, camera_id [1-based, as in the CSV], tracklet number) -> tuple of class
        indices`` in schema order.

    Raises:
        UserError: unreadable file, missing columns (all listed), non-integer cells, values
            outside ``[0, classes)`` or duplicate keys, naming the file, column and row.
    """
    fix = "re-download the attribute annotations of the dataset (see the README)"
    try:
        df = pd.read_csv(csv_path, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise UserError(f"Cannot read the attribute file '{csv_path}': {e}. Fix: {fix}.") from None
    df.columns = [str(c).strip() for c in df.columns]
    columns, missing = resolve_columns(df.columns, schema)
    if missing:
        raise UserError(f"Attribute file '{csv_path}' lacks the column(s) {missing}; expected "
                        f"{[*KEY_COLUMNS, *schema.names]} in this order. Fix: {fix}.")
    values = df[columns]
    numeric = values.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().to_numpy() | (numeric.to_numpy() % 1 != 0)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UserError(f"Attribute file '{csv_path}', line {row + 2}, column "
                        f"'{columns[col]}': {values.iat[row, col]!r} is not an integer. "
                        f"Fix: {fix}.")
    table = numeric.to_numpy().astype(np.int64)                  # (rows, 3 + n_attr)
    attrs = table[:, 3:]
    high = np.asarray(schema.flat_lens)
    out_of_range = (attrs < 0) | (attrs >= high)
    if out_of_range.any():
        row, col = np.argwhere(out_of_range)[0]
        raise UserError(f"Attribute file '{csv_path}', line {row + 2}, column "
                        f"'{columns[3 + col]}': value {attrs[row, col]} is outside the "
                        f"{high[col]} classes [0, {high[col] - 1}] of this attribute. Fix: "
                        f"check that the file belongs to this dataset, or {fix}.")
    keys = table[:, :3]
    dup = pd.DataFrame(keys).duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)[:6] + 2
        first = tuple(int(v) for v in keys[np.flatnonzero(dup)[0]])
        raise UserError(f"Attribute file '{csv_path}' has {int(dup.sum())} rows sharing a "
                        f"(person_id, camera_id, tracklets_id) key, e.g. {first} on lines "
                        f"{rows.tolist()}. Every tracklet needs exactly one row. Fix: {fix}.")
    return dict(zip(map(tuple, keys.tolist()), map(tuple, attrs.tolist()), strict=True))


def encode_bce(attr_idx: torch.Tensor, attr_lens: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """One-hot encode class indices, concatenated per group ("bce" targets).

    Args:
        attr_idx: LongTensor (N, n_attr) of class indices in CSV order, -1 for unknown.
        attr_lens: class counts per group, e.g. ``[[5, 6, ...], [9, 10, ...]]``.

    Returns:
        one FloatTensor (N, sum(group lens)) per group; an unknown attribute is all zeros.
    """
    attr_idx = torch.as_tensor(attr_idx, dtype=torch.long)
    flat = [n for g in attr_lens for n in g]
    if attr_idx.dim() != 2 or attr_idx.shape[1] != len(flat):
        raise ValueError(f"attr_idx must be (N, {len(flat)}); got {tuple(attr_idx.shape)}")
    offsets = torch.tensor([0, *np.cumsum(flat)[:-1].tolist()], dtype=torch.long)
    known = attr_idx >= 0
    onehot = torch.zeros(attr_idx.shape[0], sum(flat))          # (N, sum of all lens)
    rows = torch.arange(attr_idx.shape[0])[:, None].expand_as(attr_idx)
    onehot[rows[known], (attr_idx + offsets)[known]] = 1.0
    return list(torch.split(onehot, [sum(g) for g in attr_lens], dim=1))


def encode_attributes(attr_idx: torch.Tensor, attr_lens: Sequence[Sequence[int]] | None,
                      mode: str) -> list[torch.Tensor] | torch.Tensor:
    """Training targets in the encoding ``mode``.

    Args:
        attr_idx: LongTensor (N, n_attr) of class indices, -1 for unknown.
        attr_lens: class counts per group, or None (no attributes).
        mode: "bce" (one-hot per group), "mce" (class indices) or "none".

    Returns:
        "bce": list of FloatTensor (N, sum(group)); "mce": LongTensor (N, n_attr);
        "none" or ``attr_lens`` None: an empty LongTensor (N, 0).
    """
    attr_idx = torch.as_tensor(attr_idx, dtype=torch.long)
    if mode == "none" or attr_lens is None:
        return torch.zeros(attr_idx.shape[0], 0, dtype=torch.long)
    if mode == "bce":
        return encode_bce(attr_idx, attr_lens)
    if mode == "mce":
        return attr_idx.clone()
    raise ValueError(f"unknown attribute encoding {mode!r}; use 'bce', 'mce' or 'none'")


def decode_attribute_logits(attr_logits: Sequence[torch.Tensor],
                            attr_lens: Sequence[Sequence[int]], mode: str) -> torch.Tensor:
    """Predicted class index of every attribute.

    Args:
        attr_logits: "bce": one tensor (B, sum(group lens)) per group; "mce": one tensor
            (B, classes) per attribute in CSV order.
        attr_lens: class counts per group.
        mode: "bce" or "mce".

    Returns:
        LongTensor (B, n_attr): the argmax of each attribute's slice (bce) or head (mce).
    """
    flat = [n for g in attr_lens for n in g]
    if mode == "bce":
        if len(attr_logits) != len(attr_lens):
            raise ValueError(f"expected {len(attr_lens)} group logits, got {len(attr_logits)}")
        heads = [h for logits, g in zip(attr_logits, attr_lens, strict=True)
                 for h in torch.split(logits, list(g), dim=1)]
    elif mode == "mce":
        heads = list(attr_logits)
    else:
        raise ValueError(f"unknown attribute encoding {mode!r}; use 'bce' or 'mce'")
    if [h.shape[1] for h in heads] != flat:
        raise ValueError(f"logit widths {[h.shape[1] for h in heads]} do not match the "
                         f"attribute class counts {flat}")
    return torch.stack([h.argmax(dim=1) for h in heads], dim=1)

