"""ncauth.records.NamedTuple behaves as typing.NamedTuple for everything ncauth's records do:
the same class declared with each must give the same answers."""

from __future__ import annotations

import copy
import typing
from collections.abc import Mapping
from types import MappingProxyType

import pytest

from ncauth import records


def declare(base: type) -> type:
    class Point(base):  # type: ignore[misc, valid-type]
        """A record with a required field, defaults, a property and a classmethod."""

        x: int
        y: int = 2
        tags: Mapping[str, str] = MappingProxyType({})

        @property
        def total(self) -> int:
            return self.x + self.y

        @classmethod
        def origin(cls) -> typing.Any:
            return cls(0, 0)

    return Point


OURS, TYPING = declare(records.NamedTuple), declare(typing.NamedTuple)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: c(1),
        lambda c: c(1, 3),
        lambda c: c(x=5, tags={"a": "b"}),
        lambda c: c(4, y=7),
        lambda c: c.origin(),
        lambda c: c(1)._replace(y=9),
        lambda c: c._make([1, 2, {}]),
    ],
)
def test_same_values_and_api(make: typing.Callable[[type], typing.Any]) -> None:
    ours, theirs = make(OURS), make(TYPING)
    assert tuple(ours) == tuple(theirs) and ours == theirs
    assert (ours.x, ours.y, ours.tags, ours.total) == (theirs.x, theirs.y, theirs.tags, theirs.total)
    assert repr(ours) == repr(theirs) and ours._asdict() == theirs._asdict()
    assert hash(ours[:2]) == hash(theirs[:2])
    assert isinstance(ours, tuple) and OURS.__doc__ == TYPING.__doc__


def test_class_attributes() -> None:
    assert OURS._fields == TYPING._fields == ("x", "y", "tags")
    assert OURS._field_defaults == TYPING._field_defaults
    assert OURS.__match_args__ == TYPING.__match_args__
    assert OURS.__name__ == "Point"


@pytest.mark.parametrize(
    "bad",
    [
        lambda c: c(),
        lambda c: c(1, 2, {}, 4),
        lambda c: c(1, x=1),
        lambda c: c(1, z=1),
        lambda c: c._make([1]),
    ],
)
def test_same_refusals(bad: typing.Callable[[type], typing.Any]) -> None:
    with pytest.raises(TypeError):
        bad(TYPING)
    with pytest.raises(TypeError):
        bad(OURS)


def test_read_only_replace_copy() -> None:
    p = OURS(1)
    with pytest.raises(AttributeError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(ValueError, match="unexpected field"):
        p._replace(z=1)
    assert copy.copy(p) == p and copy.deepcopy(OURS(1, 2, {"a": "b"})) == OURS(1, 2, {"a": "b"})


def test_default_fields_last() -> None:
    with pytest.raises(TypeError):

        class Bad(records.NamedTuple):
            a: int = 1
            b: int
