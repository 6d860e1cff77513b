"""Options that are also command-line flags: each one defined once, on its dataclass field.

An options dataclass (:class:`frsurvey.options.ClassifyOptions`,
:class:`frsurvey.sources.SourceOptions`, :class:`frsurvey.image.morphology.Thresholds`)
declares each field with :func:`option`: its default, the check its values
must pass and how the command line spells it. The command line adds the
flags with :func:`add_flags` and builds the dataclass back with
:func:`from_args`; Python callers get the same defaults and the same checks
from the dataclass itself (:func:`check_fields`, called on creation).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Check", "OptionError", "add_flags", "at_least", "check_fields", "device_name", "from_args", "option"]


class OptionError(ValueError):
    """An option's value, or a combination of options, that cannot be used (the command line exits 2)."""


@dataclasses.dataclass(frozen=True)
class Check:
    """What a value must be: ``kind`` turns text into a value (raising ValueError), ``ok`` accepts it.

    Parameters
    ----------
    kind : callable
        ``int``, ``float``, ``str`` or a function that reads and normalises
        the text (raising ValueError with a message saying what to give).
    ok : callable, optional
        True for acceptable values.
    want : str
        What to give instead, e.g. ``give 1 or more``.
    """

    kind: Callable[[str], Any]
    ok: Callable[[Any], bool] | None = None
    want: str = ""

    def __call__(self, value: Any, name: str) -> None:
        """Raise :class:`OptionError` naming ``name`` unless ``value`` passes (text is read by ``kind`` first)."""
        if isinstance(value, str) and self.kind not in (int, float, str):
            try:
                self.kind(value)
            except ValueError as exc:
                raise OptionError(f"{name}: {exc}") from None
        if self.ok is not None and not self.ok(value):
            raise OptionError(f"{name}: {self.want}, not {value!r}")

    def parse(self, text: str) -> Any:
        """Read a command-line value (the argparse ``type``): the value, or argparse's error."""
        try:
            value = self.kind(text)
        except ValueError as exc:
            what = {int: "a whole number", float: "a number"}.get(self.kind)
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}" if what else str(exc)) from None
        if self.ok is not None and not self.ok(value):
            raise argparse.ArgumentTypeError(f"{self.want}, not {value}")
        return value


def at_least(lowest: float, kind: Callable[[str], Any] = int) -> Check:
    """Return the check of a number of at least ``lowest``."""
    return Check(kind, lambda v: v >= lowest, f"give {lowest:g} or more")


def _device(text: str) -> str:
    value = str(text).strip().lower()
    if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise ValueError(
        f"{text!r} is not a device: give auto (a GPU when there is one), cpu, cuda (cuda:N for the N-th GPU) or mps"
    )


#: The check of a device name: auto, cpu, cuda, cuda:N or mps (a ``torch.device`` passes as it is).
device_name = Check(_device)


def option(default: Any = None, flag: str | None = None, *, help: str = "", check: Check | None = None, **argparse_kw):
    """Return a dataclass field: its default, its check and, when ``flag`` is given, its command-line flag.

    ``argparse_kw`` are passed to ``add_argument`` (``metavar``, ``action``,
    ``const``, ``choices``, ``group``: the title of the argument group).
    A mutable default (a dataclass instance) is copied for each object.
    """
    meta = {"flag": flag, "help": help, "check": check, "argparse": argparse_kw}
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: dataclasses.replace(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _flagged(cls: type, names: Iterable[str] | None) -> list[dataclasses.Field]:
    wanted = None if names is None else set(names)
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag") and (wanted is None or f.name in wanted)]


def check_fields(obj: Any) -> None:
    """Raise :class:`OptionError` for the first field of ``obj`` whose value fails its check (None passes)."""
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        value = getattr(obj, f.name)
        if check is not None and value is not None:
            check(value, f.metadata.get("flag") or f.name)


def add_flags(parser: Any, cls: type, names: Iterable[str] | None = None, *, prefix: str = "") -> None:
    """Add the command-line flags of the fields of ``cls`` (those in ``names``, or all) to ``parser``.

    Fields with a ``group`` go into the argument group of that title (made
    once per parser). The help states the default (the parser's formatter
    adds it). Each flag's ``dest`` is ``prefix`` + the field's name (a
    prefix keeps two dataclasses' fields of one name apart).
    """
    groups: dict[str, Any] = {g.title: g for g in getattr(parser, "_action_groups", [])}
    for f in _flagged(cls, names):
        kw = dict(f.metadata["argparse"])
        title = kw.pop("group", None)
        target = parser
        if title is not None:
            target = groups.get(title) or parser.add_argument_group(title)
            groups[title] = target
        check = f.metadata["check"]
        if check is not None and kw.get("action") is None:
            kw["type"] = check.parse
        default = f.default if f.default is not dataclasses.MISSING else None
        target.add_argument(f.metadata["flag"], dest=prefix + f.name, default=default, help=f.metadata["help"], **kw)


def from_args(cls: type, args: argparse.Namespace, *, prefix: str = "", **values: Any) -> Any:
    """Return ``cls`` made from the parsed flags of its fields (those the parser had) and ``values``."""
    given = {f.name: getattr(args, prefix + f.name) for f in _flagged(cls, None) if hasattr(args, prefix + f.name)}
    given.update(values)
    return cls(**given)
