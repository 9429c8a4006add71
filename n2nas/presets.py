"""Named presets, one mechanism for every configuration family.

A preset is a static method of a frozen configuration class, marked with :func:`preset`, that returns an instance.
Its docstring's first sentence says what it is for (the command line's help shows it); the measurements behind a
preset live in ``docs/``, never in the docstring. :func:`presets_of` lists a class's presets in the order they are
defined, :func:`named` builds one by name and refuses an unknown name with a one-line error naming the option.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from n2nas.errors import ConfigError

T = TypeVar("T")
_MARK = "__n2nas_preset__"


def preset(name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Mark a function as the preset ``name`` (default: its own name with ``_`` written ``-``); put it under
    ``@staticmethod``."""
    def mark(fn: Callable[..., T]) -> Callable[..., T]:
        setattr(fn, _MARK, name or fn.__name__.replace("_", "-"))
        return fn
    return mark


def presets_of(cls: type) -> dict[str, Callable[[], Any]]:
    """``{name: factory}`` of every preset of ``cls`` (and its bases), in definition order."""
    found: dict[str, Callable[[], Any]] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            fn = attr.__func__ if isinstance(attr, staticmethod) else attr
            name = getattr(fn, _MARK, None)
            if name is not None:
                found[name] = fn
    return found


def named(cls: type[T], name: str, option: str = "--preset") -> T:
    """The preset ``name`` of ``cls``; ConfigError naming ``option`` and the known names otherwise."""
    known = presets_of(cls)
    if name not in known:
        raise ConfigError(option, f"unknown preset {name!r} (known: {', '.join(known) or 'none'})")
    return known[name]()


def summary(cls: type, name: str) -> str:
    """The first sentence of preset ``name``'s docstring, lower-cased at its start (for help texts)."""
    text = " ".join((presets_of(cls)[name].__doc__ or name).split())
    first = text.split(". ")[0].rstrip(".")
    return first[:1].lower() + first[1:]
