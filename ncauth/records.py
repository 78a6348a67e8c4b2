"""``NamedTuple`` for the modules checkpassword imports, at a tenth of the start-up cost.

``typing.NamedTuple`` builds each class through ``collections.namedtuple`` (an ``exec``)
and turns every annotation into a ``ForwardRef`` (a ``compile``): about 0.2 ms a class,
and the config, the protocol and the policy declare a dozen of them, which a
checkpassword process pays on every login (the relay's whole floor is ~20 ms). This
builds the same kind of class, a tuple subclass with named read-only fields, defaults,
``_replace``, ``_asdict``, ``_fields`` and ``_field_defaults``, without either. The
type checker sees ``typing.NamedTuple``::

    if TYPE_CHECKING:
        from typing import NamedTuple
    else:
        from ncauth.records import NamedTuple

tests/test_records.py holds it to ``typing.NamedTuple``'s behaviour. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter

TYPE_CHECKING = False  # without importing typing: this module exists to spare checkpassword's start
if TYPE_CHECKING:
    from typing import Any


class _Record(tuple):  # type: ignore[type-arg]
    """What every record class shares; its own fields come from :class:`_Meta`."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _field_defaults: dict[str, Any] = {}  # noqa: RUF012 - replaced per class, never mutated

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        fields = cls._fields
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments but {len(args)} were given")
        values = list(args)
        for name in fields[len(args) :]:
            if name in kwargs:
                values.append(kwargs.pop(name))
            elif name in cls._field_defaults:
                values.append(cls._field_defaults[name])
            else:
                raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
        if kwargs:
            raise TypeError(f"{cls.__name__}() got unexpected or repeated arguments: {sorted(kwargs)}")
        return tuple.__new__(cls, values)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Any:
        values = tuple.__new__(cls, iterable)
        if len(values) != len(cls._fields):
            raise TypeError(f"Expected {len(cls._fields)} arguments, got {len(values)}")
        return values

    def _replace(self, **kwargs: Any) -> Any:
        values = self._make([kwargs.pop(name, value) for name, value in zip(self._fields, self, strict=True)])
        if kwargs:
            raise ValueError(f"Got unexpected field names: {sorted(kwargs)!r}")
        return values

    def _asdict(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self, strict=True))
        return f"{type(self).__name__}({inner})"

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self)


class _Meta(type):
    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        if not bases:  # NamedTuple itself
            return super().__new__(mcs, name, bases, namespace)
        fields = tuple(namespace.get("__annotations__", {}))
        defaults: dict[str, Any] = {}
        for field in fields:
            if field in namespace:
                defaults[field] = namespace.pop(field)
            elif defaults:
                raise TypeError(f"Non-default namedtuple field {field} cannot follow default field(s)")
        for i, field in enumerate(fields):
            namespace[field] = property(itemgetter(i), doc=f"Alias for field number {i}")
        namespace.update(__slots__=(), _fields=fields, _field_defaults=defaults, __match_args__=fields)
        return type.__new__(type, name, (_Record,), namespace)


class NamedTuple(metaclass=_Meta):
    """Subclass it as ``typing.NamedTuple``: annotated fields, optional defaults last."""
