"""Attribute schemas (MARS, Duke, attributes.yml), the CSV check and reader, the encodings.

Every attribute is a class index (0-based, as in the CSV files). The attributes of a dataset
form two groups: group 1 holds the 9 ID-irrelevant attributes (motion, pose, ...),
group 2 the ID-relevant ones (clothes, bags, gender, ...). ``attr_lens`` lists the class
count of every attribute, per group, e.g. MARS ``[[5,6,2,2,2,2,2,2,2],[9,10,4,2,2,2,2,2,2,2,2,2]]``.

Encodings (DATASETS.ATTRIBUTE_LOSS):

* ``"bce"``: per group, the one-hot vectors of its attributes concatenated (MARS 25 + 41
  floats, Duke 25 + 33); an unknown attribute (-1) is all zeros.
* ``"mce"``: one class index per attribute, (n_attr,) int64.

:func:`check_attribute_csv` lists every problem of a CSV (``python -m tools.verify`` reports
them all); :func:`load_attribute_table` raises the first. :func:`read_attribute_schema` and
:func:`write_attribute_schema` read and write the ``attributes.yml`` of a folder dataset (your
own attributes). :func:`decode_attribute_logits` turns model logits back into class indices.
:class:`AttributeSchema`, :data:`MARS_SCHEMA`, :data:`DUKE_SCHEMA` and :data:`KEY_COLUMNS` are
constants of :mod:`utils.attribute_schemas` (which the loss reads too), re-exported here.

Example::

    table = load_attribute_table("data/mars/mars_attributes.csv", MARS_SCHEMA)
    row = table[(1, 2, 58)]                  # (pid, 1-based camera, tracklet number)
    onehots = encode_bce(torch.tensor([row]), MARS_SCHEMA.attr_lens)   # [(1, 25), (1, 41)]
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import yaml

from utils.attribute_schemas import DUKE_SCHEMA, KEY_COLUMNS, MARS_SCHEMA, AttributeSchema
from utils.errors import UserError

__all__ = [
    "AttributeCsvProblem",
    "AttributeFixes",
    "AttributeSchema",
    "DUKE_SCHEMA",
    "KEY_COLUMNS",
    "MARS_SCHEMA",
    "SCHEMA_GROUPS",
    "check_attribute_csv",
    "decode_attribute_logits",
    "encode_attributes",
    "encode_bce",
    "load_attribute_table",
    "read_attribute_schema",
    "resolve_columns",
    "write_attribute_schema",
]

# The key cells of a CSV row: (pid, camera, tracklet number), or with text key columns (a
# folder dataset's tracklet folder name) the text in their place.
AttributeKey = tuple[int | str, ...]

# The two groups of an attributes.yml, in stream order (ID-irrelevant, then ID-relevant).
SCHEMA_GROUPS = ("id_irrelevant", "id_relevant")
_FIX_YML = ("attributes.yml holds exactly two keys, id_irrelevant and id_relevant, each a "
            "mapping of attribute name -> number of classes (an integer >= 1) in CSV column "
            "order, e.g. 'id_irrelevant: {pose: 3, occlusion: 2}' (README, Your own data)")


def read_attribute_schema(path: str, key_columns: Sequence[str] = KEY_COLUMNS,
                          text_keys: Sequence[str] = ()) -> AttributeSchema:
    """The :class:`AttributeSchema` of an ``attributes.yml``.

    The file holds exactly the two keys of :data:`SCHEMA_GROUPS`, each a non-empty mapping
    ``attribute name -> number of classes`` in CSV column order::

        id_irrelevant: {pose: 3, occlusion: 2}
        id_relevant: {gender: 2, top color: 9}

    Args:
        path: the yml file.
        key_columns: the CSV's key columns (before the attributes).
        text_keys: the key columns that hold text.

    Raises:
        UserError: the file cannot be read, is not YAML, lacks a group or has another key, a
            group is empty or not a mapping, a name is not text or repeats (or is a key
            column), a class count is not an integer >= 1; the message names the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"Cannot read the attribute schema '{path}': {e}. Fix: {_FIX_YML}.") \
            from None
    if not isinstance(loaded, dict) or set(loaded) != set(SCHEMA_GROUPS):
        keys = sorted(map(str, loaded)) if isinstance(loaded, dict) else type(loaded).__name__
        raise UserError(f"'{path}' must hold the keys {list(SCHEMA_GROUPS)}; it holds {keys}. "
                        f"Fix: {_FIX_YML}.")
    groups, lens = [], []
    for group in SCHEMA_GROUPS:
        entries = loaded[group]
        if not isinstance(entries, dict) or not entries:
            raise UserError(f"'{path}': {group} must be a non-empty mapping of attribute name "
                            f"-> number of classes; got {entries!r}. Fix: {_FIX_YML}.")
        for name, count in entries.items():
            if not isinstance(name, str) or not name.strip():
                raise UserError(f"'{path}': the {group} attribute name {name!r} is not a text "
                                "(YAML reads yes/no/on/off and numbers otherwise). Fix: quote "
                                "it, e.g. \"'yes': 2\".")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise UserError(f"'{path}': attribute '{name}' ({group}) has {count!r} classes; "
                                f"a class count is an integer >= 1. Fix: {_FIX_YML}.")
        groups.append(tuple(n.strip() for n in entries))
        lens.append(tuple(entries.values()))
    names = [n for g in groups for n in g]
    repeated = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(key_columns)))
    if repeated:
        raise UserError(f"'{path}': the attribute name(s) {repeated} repeat or are key columns "
                        f"{list(key_columns)}; every CSV column needs its own name. Fix: rename "
                        "them.")
    return AttributeSchema(groups=tuple(groups), lens=tuple(lens),
                           key_columns=tuple(key_columns), text_keys=tuple(text_keys))


def write_attribute_schema(path: str, schema: AttributeSchema) -> None:
    """Write ``schema`` as an ``attributes.yml`` that :func:`read_attribute_schema` reads back."""
    content = {group: dict(zip(names, counts, strict=True))
               for group, names, counts in zip(SCHEMA_GROUPS, schema.groups, schema.lens,
                                               strict=True)}
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(content, f, sort_keys=False, allow_unicode=True)


def resolve_columns(header: Sequence[str], schema: AttributeSchema
                    ) -> tuple[list[str | None], list[str]]:
    """Find the key and attribute columns of a CSV header (accepting the schema's aliases).

    Args:
        header: the CSV's column names (stripped).
        schema: the dataset's :class:`AttributeSchema`.

    Returns:
        (the header name of each expected column, ``schema.key_columns`` then ``schema.names``,
        None where absent; the expected names that are absent).
    """
    aliases = dict(schema.aliases)
    present = set(header)
    columns, missing = [], []
    for name in (*schema.key_columns, *schema.names):
        found = next((c for c in (name, *aliases.get(name, ())) if c in present), None)
        if found is None:
            missing.append(name)
        columns.append(found)
    return columns, missing


_FIX_CSV = "re-download the attribute annotations of the dataset (see the README)"
_FIX_RANGE = f"check that the file belongs to this dataset, or {_FIX_CSV}"
_NO_ATTRIBUTES = "set ATTR_RECOG_ON False to train without attributes"
_FIX_ROWS = f"use the attribute file that belongs to this split, or {_NO_ATTRIBUTES}"
_FIX_HEADER = "insert that header as line 1 of the file (the columns in this order)"


@dataclass(frozen=True)
class AttributeFixes:
    """What to do about each kind of problem of an attribute CSV, in the words of its dataset
    (each dataset class's ``attribute_fixes``: MARS and Duke name their download, the folder
    dataset its attributes.csv). A header-less file gets the same fix everywhere: insert the
    header that the message names.

    Attributes:
        file: the file cannot be read or lacks columns.
        cell: a cell is empty or not an integer.
        range: a class index outside the classes of its attribute.
        duplicate: several rows share a key.
        rows: a tracklet without the row it needs, or a row that must name a tracklet and
            does not (see :class:`data.datasets.base.AttributeMatcher`).
        missing: the file is missing.
    """

    file: str = _FIX_CSV
    cell: str = _FIX_CSV
    range: str = _FIX_RANGE
    duplicate: str = _FIX_CSV
    rows: str = _FIX_ROWS
    missing: str = f"get the attribute file of the dataset (see the README), or {_NO_ATTRIBUTES}"

    @classmethod
    def download(cls, file_name: str) -> AttributeFixes:
        """The fixes of an attribute file that comes with a download: get it again."""
        again = (f"re-download the attribute annotations ({file_name}, from the AITL code "
                 "release; README, Data preparation)")
        return cls(again, again, f"check that the file belongs to this dataset, or {again}",
                   again, _FIX_ROWS, f"get {file_name} from the AITL code release (README, Data "
                   f"preparation), or {_NO_ATTRIBUTES}")


@dataclass(frozen=True)
class AttributeCsvProblem:
    """One problem of an attribute CSV, found by :func:`check_attribute_csv`.

    Attributes:
        path: the CSV file.
        message: what is wrong, starting with the quoted path and naming the line(s), column
            and value where they apply, e.g. ``"'a.csv', line 3, column 'age': value 4 is
            outside the 4 classes [0, 3] of this attribute"``.
        fix: what to do about it.
        lines: the file lines concerned, 1-based with the header as line 1 (empty when the
            problem concerns the whole file).
        column: the CSV column concerned ("" when none).
        value: the text of the cell concerned ("" when none or empty).
    """

    path: str
    message: str
    fix: str
    lines: tuple[int, ...] = ()
    column: str = ""
    value: str = ""


def check_attribute_csv(csv_path: str, schema: AttributeSchema,
                        fixes: AttributeFixes | None = None
                        ) -> tuple[dict[AttributeKey, tuple[int, ...]] | None,
                                   list[AttributeCsvProblem]]:
    """Read an attribute CSV and list every problem in it.

    The checks: the file reads as CSV; it has the key columns and every attribute of
    ``schema`` (aliases accepted, extra columns ignored), and a first line that holds no
    expected name but mostly numbers is reported as a missing header row (naming the
    expected header); every key cell is an integer (a non-empty text in the
    ``schema.text_keys`` columns) and every attribute cell an integer within ``[0,
    classes)``; no two lines share a key.

    Args:
        csv_path: the CSV file (``schema.key_columns``, e.g. ``person_id, camera_id,
            tracklets_id``, and the attributes).
        schema: the dataset's :class:`AttributeSchema`.
        fixes: the fix of each kind of problem (the dataset class's ``attribute_fixes``;
            default: re-download the dataset's annotations).

    Returns:
        ``(table, problems)``. ``table`` maps the key of every line whose key cells are valid,
        e.g. ``(pid, camera_id [1-based, as in the CSV], tracklet number)``, to its attribute
        class indices in schema order, -1 for a cell with a problem (a duplicated key keeps
        its last line); None when the file cannot be read or lacks columns. ``problems``
        lists the bad cells line by line (columns in schema order), then each duplicated key
        (by its first line); it is empty for a valid file.
    """
    fixes = fixes or AttributeFixes()
    try:
        df = pd.read_csv(csv_path, skipinitialspace=True, dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        return None, [AttributeCsvProblem(csv_path, f"'{csv_path}' cannot be read: {e}",
                                          fixes.file)]
    df.columns = [str(c).strip() for c in df.columns]
    columns, missing = resolve_columns(df.columns, schema)
    expected = [*schema.key_columns, *schema.names]
    if missing:
        first = _first_line(csv_path)
        if len(missing) == len(expected) and _looks_like_data(first):
            shown = ",".join(first)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            return None, [AttributeCsvProblem(
                csv_path, f"'{csv_path}' has no header row: its line 1 ({shown!r}) holds values, "
                f"not column names; expected the header {','.join(expected)!r}", _FIX_HEADER,
                (1,))]
        return None, [AttributeCsvProblem(
            csv_path, f"'{csv_path}' lacks the column(s) {missing}; expected "
            f"{expected} in this order", fixes.file)]
    raw = df[columns]
    values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)  # (rows, cols)
    problems, bad = _cell_problems(csv_path, raw, values, schema, fixes)
    n_key = len(schema.key_columns)
    good_key = ~bad[:, :n_key].any(axis=1)
    table = np.where(bad, -1, np.nan_to_num(values)).astype(np.int64)[good_key]   # (rows', cols)
    keys = table[:, :n_key].tolist()
    for c, name in enumerate(schema.key_columns):
        if name in schema.text_keys:
            for key, text in zip(keys, raw.iloc[good_key, c].str.strip(), strict=True):
                key[c] = text
    keys = list(map(tuple, keys))
    lines = np.flatnonzero(good_key) + 2                        # 1-based, the header is line 1
    problems += _duplicate_problems(csv_path, keys, lines, schema.key_columns, fixes.duplicate)
    return dict(zip(keys, map(tuple, table[:, n_key:].tolist()), strict=True)), problems


def _first_line(csv_path: str) -> list[str]:
    """The stripped cells of the file's first line as written (pandas renames repeated
    header names); empty when it cannot be read."""
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            return [c.strip() for c in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _looks_like_data(cells: Sequence[str]) -> bool:
    """Whether a first line is a data row: at least half its cells are numbers."""
    def number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    return bool(cells) and 2 * sum(map(number, cells)) >= len(cells)


def _cell_problems(csv_path: str, raw: pd.DataFrame, values: np.ndarray, schema: AttributeSchema,
                   fixes: AttributeFixes) -> tuple[list[AttributeCsvProblem], np.ndarray]:
    """The problems of the cells (not integers, out of range, empty texts) and their mask.

    Args:
        raw: the key and attribute columns as read (text, NaN for an empty cell).
        values: ``raw`` as numbers, NaN where a cell is not a number, (rows, cols).

    Returns:
        (the problems, the (rows, cols) mask of the bad cells).
    """
    n_key = len(schema.key_columns)
    text = np.array([c < n_key and name in schema.text_keys
                     for c, name in enumerate((*schema.key_columns, *schema.names))])
    not_int = np.isnan(values) | (values % 1 != 0)
    for c in np.flatnonzero(text).tolist():                      # a text key: only not empty
        not_int[:, c] = raw.iloc[:, c].fillna("").str.strip().eq("").to_numpy()
    high = np.array([np.inf] * n_key + schema.flat_lens)
    low = np.array([-np.inf] * n_key + [0] * len(schema.flat_lens))
    outside = ~not_int & ~text & ((values < low) | (values >= high))
    problems = []
    for row, col in np.argwhere(not_int | outside).tolist():
        cell, column = raw.iat[row, col], raw.columns[col]
        empty = cell is None or cell != cell or str(cell).strip() == ""   # NaN: an empty cell
        if text[col] or (not_int[row, col] and empty):
            what, fix = "the cell is empty", fixes.cell
        elif not_int[row, col]:
            what, fix = f"{cell!r} is not an integer", fixes.cell
        else:
            n = int(high[col])
            what = f"value {int(values[row, col])} is outside the {n} classes [0, {n - 1}] of " \
                   "this attribute"
            fix = fixes.range
        problems.append(AttributeCsvProblem(
            csv_path, f"'{csv_path}', line {row + 2}, column '{column}': {what}", fix,
            (row + 2,), column, cell if isinstance(cell, str) else ""))
    return problems, not_int | outside


def _duplicate_problems(csv_path: str, keys: list[AttributeKey], lines: np.ndarray,
                        key_columns: Sequence[str], fix: str) -> list[AttributeCsvProblem]:
    """One problem per key that several lines share; ``keys`` and ``lines`` (n,) per line."""
    dup = pd.Series(keys, dtype=object).duplicated(keep=False).to_numpy()
    groups: dict[AttributeKey, list[int]] = {}
    for i in np.flatnonzero(dup).tolist():
        groups.setdefault(keys[i], []).append(int(lines[i]))
    return [AttributeCsvProblem(
        csv_path, f"'{csv_path}' has {len(where)} rows sharing a ({', '.join(key_columns)}) "
        f"key: {key} on lines {where}. Every tracklet needs exactly one row",
        fix, tuple(where)) for key, where in groups.items()]


def load_attribute_table(csv_path: str, schema: AttributeSchema,
                         fixes: AttributeFixes | None = None
                         ) -> dict[AttributeKey, tuple[int, ...]]:
    """Read and validate an attribute CSV into a lookup table.

    Args:
        csv_path: the CSV file (``person_id, camera_id, tracklets_id`` and the attributes).
        schema: the dataset's :class:`AttributeSchema`; extra CSV columns are ignored.
        fixes: the fix of each kind of problem (see :func:`check_attribute_csv`).

    Returns:
        dict ``(pid, camera_id [1-based, as in the CSV], tracklet number) -> tuple of class
        indices`` in schema order.

    Raises:
        UserError: the first problem :func:`check_attribute_csv` finds (unreadable file,
            missing columns [all listed] or header row, a cell that is not an integer or
            outside its class count, a duplicated key), naming the file, line and column.
    """
    table, problems = check_attribute_csv(csv_path, schema, fixes)
    if problems:
        first = problems[0]
        raise UserError(f"Attribute file {first.message}. Fix: {first.fix}.")
    return table


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


def decode_attribute_logits(attr_logits: torch.Tensor | Sequence[torch.Tensor],
                            attr_lens: Sequence[Sequence[int]], mode: str = "flat"
                            ) -> torch.Tensor:
    """Predicted class index of every attribute: the argmax of each attribute's logits.

    Every layout is the attribute logits in CSV order, differently cut: "flat" is their
    concatenation (what :mod:`engine.evaluator` averages over clips), "bce" one tensor per
    group, "mce" one tensor per attribute (the model's train outputs of the two modes).

    Args:
        attr_logits: "flat": one tensor (B, sum of all class counts); "bce": one tensor
            (B, sum(group lens)) per group; "mce": one tensor (B, classes) per attribute.
        attr_lens: class counts per group, e.g. MARS ``[[5, 6, ...], [9, 10, ...]]``.
        mode: the layout of ``attr_logits``: "flat", "bce" or "mce".

    Returns:
        LongTensor (B, n_attr) on the logits' device, in CSV order.

    Raises:
        ValueError: an unknown mode, or logits that do not match ``attr_lens``.
    """
    flat = [n for g in attr_lens for n in g]
    if mode == "flat":
        if attr_logits.shape[1] != sum(flat):
            raise ValueError(f"flat logits must be (B, {sum(flat)}); got "
                             f"{tuple(attr_logits.shape)}")
        heads = list(torch.split(attr_logits, flat, dim=1))
    elif mode == "bce":
        if len(attr_logits) != len(attr_lens):
            raise ValueError(f"expected {len(attr_lens)} group logits, got {len(attr_logits)}")
        heads = [h for logits, g in zip(attr_logits, attr_lens, strict=True)
                 for h in torch.split(logits, list(g), dim=1)]
    elif mode == "mce":
        heads = list(attr_logits)
    else:
        raise ValueError(f"unknown attribute logit layout {mode!r}; use 'flat', 'bce' or 'mce'")
    if [h.shape[1] for h in heads] != flat:
        raise ValueError(f"logit widths {[h.shape[1] for h in heads]} do not match the "
                         f"attribute class counts {flat}")
    return torch.stack([h.argmax(dim=1) for h in heads], dim=1)
