"""Name -> object tables of the extension points, one per config key that names a choice.

Each package owns the registries of its extension points and registers its built-in choices
next to their definitions (``modeling.backbones.BACKBONES``, ``data.datasets.DATASETS``, ...);
``engine.defaults.check_choices`` checks a config's values against them. A new choice is one
registration line, as a decorator or a plain call:

Example:
    >>> SHAPES = Registry("MODEL.SHAPE", "shape")
    >>> @SHAPES.register("square")
    ... def square(side: float) -> float:
    ...     return side * side
    >>> _ = SHAPES.register("disc", lambda r: 3.14159 * r * r)
    >>> SHAPES.names()
    ('square', 'disc')
    >>> SHAPES.get("square")(3.0)
    9.0
    >>> SHAPES.get("triangle")
    Traceback (most recent call last):
    ...
    utils.errors.UserError: Invalid value 'triangle' for MODEL.SHAPE; allowed values: square, disc.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from utils.errors import UserError

__all__ = ["Registry"]

T = TypeVar("T")
_MISSING = object()


class Registry(Generic[T]):
    """An ordered table of named objects (factories, classes, functions) for one config key.

    The names keep their registration order, which is the order error messages list them in.

    Args:
        key: the config key whose values are the names (e.g. ``"MODEL.NAME"``); unknown names
            are reported as bad values of it.
        what: what one entry is, in words (e.g. ``"backbone"``), for messages and ``repr``.
    """

    def __init__(self, key: str, what: str) -> None:
        self.key = key
        self.what = what
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name, obj=_MISSING):
        """Add ``obj`` under ``name``; without ``obj``, a decorator that adds what it decorates.

        Returns ``obj`` (the decorated object) unchanged.

        Raises:
            TypeError: ``name`` is not a non-empty string.
            ValueError: ``name`` is registered already (unregister it first to replace it).
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"A {self.what} name ({self.key}) must be a non-empty string, "
                            f"got {name!r}.")
        if obj is _MISSING:
            def decorator(target: T) -> T:
                return self.register(name, target)
            return decorator
        if name in self._entries:
            raise ValueError(f"The {self.what} {name!r} ({self.key}) is registered already, as "
                             f"{self._entries[name]!r}; choose another name (or unregister it "
                             "first).")
        self._entries[name] = obj
        return obj

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its object (for tests and plugins that are unloaded).

        Raises:
            UserError: ``name`` is not registered (as :meth:`get`).
        """
        obj = self.get(name)
        del self._entries[name]
        return obj

    def get(self, name: str) -> T:
        """The object registered under ``name``.

        Raises:
            UserError: ``name`` is not registered; the message names :attr:`key` and lists the
                registered names (``Invalid value 'x' for MODEL.NAME; allowed values: ...``;
                ``none (no ... is registered)`` for an empty registry).
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):   # (TypeError: an unhashable value)
            allowed = ", ".join(self._entries) or f"none (no {self.what} is registered)"
            raise UserError(f"Invalid value {name!r} for {self.key}; allowed values: "
                            f"{allowed}.") from None

    __getitem__ = get

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs, in registration order."""
        return list(self._entries.items())

    def values(self) -> list[T]:
        """The registered objects, in registration order."""
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.key!r}, {self.what!r}: {', '.join(self._entries)})"
