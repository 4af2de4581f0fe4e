"""One small registry type: a name -> a factory, and a cheap probe that says why it cannot run here.

IDN backends, face detectors, identity encoders, training teachers and evaluation methods register
in one each, so every kind of pluggable part is made, listed and reported (``mfs-fast doctor``)
the same way. A probe returns None when the part can run on this machine, else the reason in
words; it must be cheap (no model loading), because ``doctor`` and ``available()`` call every probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Iterable, TypeVar, Union

from .errors import MfsError

T = TypeVar("T")
Probe = Callable[[], "str | None"]
Note = Union[str, Callable[[], str]]
NOT_IMPLEMENTED = "not implemented in this version"


def always_available() -> str | None:
    """The probe of parts that need nothing beyond mfs_fast itself."""
    return None


def lookup_probe(lookup: Callable[[], object], error: type[Exception] = MfsError) -> Probe:
    """The probe of a part whose files ``lookup`` finds, raising ``error`` (saying what to do)
    when they are not there: that error's message is the reason."""

    def probe() -> str | None:
        try:
            lookup()
        except error as failure:
            return str(failure)
        return None

    return probe


@dataclass(frozen=True)
class Entry(Generic[T]):
    """How to build one part, how to tell whether it can run here, and what to say when it can."""

    name: str
    factory: Callable[..., T]
    probe: Probe = always_available
    note: Note = "ok"  # doctor's words for a usable entry (or a function giving them)

    def unavailable_reason(self) -> str | None:
        """None when usable here, else why not."""
        return self.probe()

    def describe(self) -> str:
        """What doctor says of a usable entry."""
        return self.note() if callable(self.note) else self.note


class Registry(Generic[T]):
    """Named factories of one kind of part (``kind`` names it in messages: "backend", "face detector").

    ``error`` is raised by :meth:`create` for unknown or unusable names.
    """

    def __init__(self, kind: str, error: type[MfsError] = MfsError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, factory: Callable[..., T], probe: Probe = always_available, note: Note = "ok") -> None:
        """Make ``create(name, ...)`` call ``factory(...)``; a later add of the same name replaces it."""
        self._entries[name] = Entry(name, factory, probe, note)

    def register(self, name: str, probe: Probe = always_available, note: Note = "ok"):
        """Decorator form of :meth:`add` (for a class or a factory function); returns it unchanged."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory, probe, note)
            return factory

        return decorate

    def get(self, name: str) -> Entry[T] | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def require(self, name: str) -> Entry[T]:
        """The entry of ``name``, or an :class:`MfsError` in one line: which name, what to choose instead."""
        if name not in self:
            raise MfsError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def unavailable_reason(self, name: str) -> str | None:
        """None when ``name`` is registered and usable here, else why not (unknown names too)."""
        entry = self._entries.get(name)
        if entry is None:
            return f"unknown {self.kind} {name!r}: {NOT_IMPLEMENTED} (known: {', '.join(sorted(self._entries))})"
        return entry.unavailable_reason()

    def available(self) -> list[str]:
        """Registered names usable on this machine, in registration order."""
        return [name for name, entry in self._entries.items() if entry.unavailable_reason() is None]

    def report(self, first: Iterable[str] = ()) -> list[tuple[str, bool, str]]:
        """(name, usable, reason or note) for ``first`` (in that order; unknown names are reported as
        not implemented) and then every other registered name."""
        report = []
        for name in dict.fromkeys([*first, *self._entries]):
            entry = self._entries.get(name)
            reason = NOT_IMPLEMENTED if entry is None else entry.unavailable_reason()
            report.append((name, reason is None, reason or entry.describe()))
        return report

    def create(self, name: str, *args, **options) -> T:
        """A new part by name; ``error`` with the reason when it is unknown or cannot run here
        (errors the factory itself raises pass through unchanged)."""
        reason = self.unavailable_reason(name)
        if reason is not None:
            raise self.error(f"{self.kind} {name!r} cannot be used: {reason}")
        return self._entries[name].factory(*args, **options)

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (tests register extras in one)."""
        twin: Registry[T] = Registry(self.kind, self.error)
        twin._entries = dict(self._entries)
        return twin
