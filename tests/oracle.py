"""The ``openai`` package's realtime models as a strict schema oracle (test-only).

Two traps (REALTIME.md): the package's unions are not pydantic discriminated unions, and
its models accept unknown keys. So we build a discriminated union over the members and
walk ``model_extra`` recursively, failing on any key the official schema does not know.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Union

from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, Field, TypeAdapter


def _members(union: Any) -> tuple[type[BaseModel], ...]:
    inner = typing.get_args(union)[0] if typing.get_origin(union) is Annotated else union
    return typing.get_args(inner)


def _adapter(union: Any) -> TypeAdapter[Any]:
    members = _members(union)
    return TypeAdapter(Annotated[Union[members], Field(discriminator="type")])  # noqa: UP007 - runtime union


CLIENT = _adapter(RealtimeClientEvent)
SERVER = _adapter(RealtimeServerEvent)


def unknown_keys(node: Any, path: str = "") -> list[str]:
    """Every key the official models did not declare, as dotted paths."""
    found: list[str] = []
    if isinstance(node, BaseModel):
        found += [f"{path}.{k}".lstrip(".") for k in (node.model_extra or {})]
        for name in type(node).model_fields:
            found += unknown_keys(getattr(node, name), f"{path}.{name}")
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            found += unknown_keys(v, f"{path}[{i}]")
    elif isinstance(node, dict):
        for k, v in node.items():
            found += unknown_keys(v, f"{path}.{k}")
    return found


def check(adapter: TypeAdapter[Any], event: dict[str, Any]) -> None:
    """Raise AssertionError when ``event`` does not fit the official schema exactly."""
    model = adapter.validate_python(event)
    extra = unknown_keys(model)
    assert not extra, f"{event.get('type')}: keys unknown to the official schema: {extra}"
