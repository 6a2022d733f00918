"""Configuration: ``from config import cfg`` (the defaults) or ``get_cfg()`` (a fresh clone)."""

from yacs.config import CfgNode

from .defaults import _C as cfg
from .validate import CHOICES, merge_config_file, merge_overrides, validate_cfg


def get_cfg() -> CfgNode:
    """Return a fresh, mutable copy of the default configuration."""
    return cfg.clone()


def load_cfg(config_file: str | None = None, opts: list[str] | None = None,
             freeze: bool = True) -> CfgNode:
    """Defaults, then ``config_file``, then ``KEY VALUE`` ``opts``; validated (and frozen).

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


__all__ = ["cfg", "get_cfg", "load_cfg", "validate_cfg", "merge_config_file", "merge_overrides",
           "CHOICES"]
