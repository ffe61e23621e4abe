"""Frozen, slotted value records without ``@dataclass``'s class-creation cost.

``@dataclass(frozen=True)`` compiles five or six methods from generated source for every class,
about 0.6 ms each; the records on the ``credential-process`` path cost ~5 ms of every cold run
that way. A ``Record`` subclass writes its typed ``__init__`` by hand (``_init`` assigns past the
frozen ``__setattr__``) and lists its fields; equality, hashing, the repr and immutability behave
as the dataclass versions did (same repr text, ``dataclasses.FrozenInstanceError`` on assignment).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import ...`: see __init__.py
if TYPE_CHECKING:
    from typing import Any, ClassVar, TypeVar

    _R = TypeVar("_R", bound="Record")

_set = object.__setattr__


class Record:
    __slots__ = ()
    #: every field, in order (equality, hashing)
    _fields: ClassVar[tuple[str, ...]] = ()
    #: the fields the repr shows (dataclass ``repr=False`` ones left out)
    _shown: ClassVar[tuple[str, ...]] = ()
    #: the fields compared and hashed (dataclass ``compare=False`` ones left out); default: all
    _compared: ClassVar[tuple[str, ...] | None] = None

    def _init(self, **values: Any) -> None:
        for name, value in values.items():
            _set(self, name, value)

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in (self._fields if self._compared is None else self._compared))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._shown)
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        """The fields as a new dict: ``vars(record)`` and ``record.__dict__`` worked on the dataclasses."""
        return {n: getattr(self, n) for n in self._fields}

    def with_changes(self: _R, **changes: Any) -> _R:
        """A copy with some fields changed (``dataclasses.replace`` for a record)."""
        return type(self)(**{**self.__dict__, **changes})

    def __reduce__(self) -> tuple[Any, ...]:  # copy/pickle: rebuild through __init__
        return (_rebuild, (type(self), {n: getattr(self, n) for n in self._fields}))


def _rebuild(cls: type[Record], values: dict[str, Any]) -> Record:
    obj = cls.__new__(cls)
    obj._init(**values)
    return obj
