"""The built-in attribute schemas (MARS, Duke): constants, no file read, no ``data`` import.

An :class:`AttributeSchema` holds the names and class counts of a dataset's attributes in
two groups: group 1 the 9 ID-irrelevant attributes (motion, pose, ...), group 2 the
ID-relevant ones (clothes, bags, gender, ...). :mod:`data.attributes` re-exports everything
here (and adds the CSV reader and the folder dataset's ``attributes.yml``); the loss
(:func:`layers.make_loss`) reads :data:`BUILTIN_SCHEMAS` when it is given no ``attr_lens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["BUILTIN_SCHEMAS", "DUKE_SCHEMA", "KEY_COLUMNS", "MARS_SCHEMA", "AttributeSchema"]

KEY_COLUMNS = ("person_id", "camera_id", "tracklets_id")


@dataclass(frozen=True)
class AttributeSchema:
    """Names and class counts of a dataset's attributes, in CSV column order.

    Attributes:
        groups: the attribute names of each group (ID-irrelevant, then ID-relevant).
        lens: the class count of each attribute, per group (same nesting as ``groups``).
        aliases: other CSV spellings accepted for a column, ``{name: (alias, ...)}``.
        key_columns: the CSV columns that identify a tracklet, before the attributes.
        text_keys: the key columns read as text (stripped) instead of integers.
    """

    groups: tuple[tuple[str, ...], ...]
    lens: tuple[tuple[int, ...], ...]
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
    key_columns: tuple[str, ...] = KEY_COLUMNS
    text_keys: tuple[str, ...] = ()

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

# DATASETS.NAME -> the schema of the datasets whose attributes are fixed (the folder dataset's
# come from its attributes.yml: pass ``dataset.attr_lens``; the others have none).
BUILTIN_SCHEMAS = MappingProxyType({"mars": MARS_SCHEMA, "duke": DUKE_SCHEMA})
