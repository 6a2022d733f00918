"""Configuration: ``from config import cfg`` (the defaults) or ``get_cfg()`` (a fresh clone)."""

from collections.abc import Sequence

from yacs.config import CfgNode

from .defaults import _C as cfg
from .validate import CHOICES, merge_config_file, merge_overrides, validate_cfg


def get_cfg() -> CfgNode:
    """Return a fresh, mutable copy of the default configuration."""
    return cfg.clone()


def attributes_on(cfg: CfgNode, attr_lens: Sequence[Sequence[int]] | None) -> bool:
    """Whether a run trains and evaluates the attribute streams: ATTR_RECOG_ON and a dataset
    with attributes (``attr_lens``, the dataset's class counts per group, not None). The one
    place that decides it (data loaders, loss, model, evaluation)."""
    return bool(cfg.ATTR_RECOG_ON) and attr_lens is not None


def load_cfg(config_file: str | None = None, opts: list[str] | None = None,
             freeze: bool = True) -> CfgNode:
    """Defaults, then ``config_file``, then ``KEY VALUE`` ``opts``; validated (and frozen).

    Validated here: types and ranges (:func:`validate_cfg`). The values that name registered
    objects (MODEL.NAME, DATASETS.NAME, ...) are checked by ``engine.load_cfg``, which runs
    this and then ``engine.defaults.check_choices``: the loader of the commands.

    Raises:
        utils.errors.UserError: unknown key, bad value or missing file, with a message naming it.
    """
    c = get_cfg()
    if config_file:
        merge_config_file(c, config_file)
    if opts:
        merge_overrides(c, opts)
    validate_cfg(c)
    if freeze:
        c.freeze()
    return c


__all__ = ["attributes_on", "cfg", "get_cfg", "load_cfg", "validate_cfg", "merge_config_file",
           "merge_overrides", "CHOICES"]
