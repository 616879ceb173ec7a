"""A proxy's toxics: one chain per direction, and the live links that run them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import gojson
from .errors import (
    bad_request_body,
    invalid_stream,
    invalid_toxic_type,
    toxic_already_exists,
    toxic_not_found,
)
from .toxics import REGISTRY, Toxic

if TYPE_CHECKING:
    from .link import ToxicLink

UPSTREAM, DOWNSTREAM = 0, 1  # upstream = client -> server, downstream = server -> client


def parse_direction(stream: str) -> int | None:
    return {"upstream": UPSTREAM, "downstream": DOWNSTREAM}.get(stream.lower())


@dataclass(eq=False)
class ToxicWrapper:
    """A toxic as the API knows it: the toxic (its attributes) plus name, stream, toxicity."""

    name: str
    type: str
    stream: str  # as sent (case kept)
    toxicity: float
    toxic: Toxic
    direction: int
    index: int = -1  # position in the chain of its direction (0 is the hidden noop)

    def to_json(self) -> dict[str, Any]:
        return {
            "attributes": self.toxic.attributes(),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": gojson.float32_value(self.toxicity),
        }


def _apply_attributes(toxic: Toxic, attributes: dict[str, Any]) -> None:
    """Set the attributes present in ``attributes`` (all checked before any is set)."""
    values = {}
    for name in toxic.attribute_names():
        try:
            value = gojson.field(attributes, name, ".attributes", "int64")
        except gojson.DecodeError as exc:
            raise bad_request_body(exc) from None
        if value is not None:
            values[name] = value
    for name, value in values.items():
        setattr(toxic, name, value)


def _decode_object(body: bytes, go_type: str) -> dict[str, Any]:
    try:
        value = gojson.decode(body)
    except gojson.DecodeError as exc:
        raise bad_request_body(exc) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request_body(gojson.type_error(value, "Go value", go_type))
    return value


def _attributes_object(obj: dict[str, Any], owner: str) -> dict[str, Any]:
    attributes = obj.get("attributes")
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise bad_request_body(gojson.type_error(
            attributes, f"Go struct field {owner}.attributes", "toxics.Toxic"))
    return attributes


class ToxicCollection:
    def __init__(self) -> None:
        noop = ToxicWrapper("", "noop", "", 1.0, REGISTRY["noop"](), -1, 0)
        self.chain: list[list[ToxicWrapper]] = [[noop], [noop]]
        self.links: set[ToxicLink] = set()

    def toxic_array(self) -> list[dict[str, Any]]:
        """Upstream toxics first, then downstream, each in insertion order."""
        return [wrapper.to_json() for chain in self.chain for wrapper in chain[1:]]

    def find(self, name: str) -> ToxicWrapper | None:
        for chain in self.chain:
            for wrapper in chain[1:]:
                if wrapper.name == name:
                    return wrapper
        return None

    def get(self, name: str) -> ToxicWrapper:
        wrapper = self.find(name)
        if wrapper is None:
            raise toxic_not_found()
        return wrapper

    async def add_json(self, body: bytes) -> ToxicWrapper:
        """Create a toxic from an API body. Checks in the Go server's order: decode, stream,
        type, duplicate name, attribute types."""
        obj = _decode_object(body, "toxics.ToxicWrapper")
        try:
            name = gojson.field(obj, "name", "ToxicWrapper", "string") or ""
            type_name = gojson.field(obj, "type", "ToxicWrapper", "string") or ""
            stream = gojson.field(obj, "stream", "ToxicWrapper", "string")
            toxicity = gojson.field(obj, "toxicity", "ToxicWrapper", "float32")
        except gojson.DecodeError as exc:
            raise bad_request_body(exc) from None
        attributes = _attributes_object(obj, "ToxicWrapper")
        stream = "downstream" if stream is None else stream
        direction = parse_direction(stream)
        if direction is None:
            raise invalid_stream()
        name = name or f"{type_name}_{stream}"
        if type_name not in REGISTRY:
            raise invalid_toxic_type()
        if self.find(name) is not None:
            raise toxic_already_exists()
        toxic = REGISTRY[type_name]()
        _apply_attributes(toxic, attributes)
        wrapper = ToxicWrapper(name, type_name, stream, 1.0 if toxicity is None else toxicity,
                               toxic, direction)
        await self._chain_add(wrapper)
        return wrapper

    async def update_json(self, name: str, body: bytes) -> ToxicWrapper:
        """Merge ``{"attributes": {...}, "toxicity": x}`` into a toxic; the rest is fixed."""
        wrapper = self.get(name)
        obj = _decode_object(body, "struct { Attributes interface {}; Toxicity float32 }")
        try:
            toxicity = gojson.field(obj, "toxicity", "", "float32")
        except gojson.DecodeError as exc:
            raise bad_request_body(exc) from None
        _apply_attributes(wrapper.toxic, _attributes_object(obj, ""))
        if toxicity is not None:
            wrapper.toxicity = toxicity
        await self._on_links(wrapper.direction, lambda link: link.update_toxic(wrapper))
        return wrapper

    async def remove(self, name: str) -> None:
        await self._chain_remove(self.get(name))

    async def reset(self) -> None:
        """Remove every toxic (as DELETE would, one by one)."""
        for chain in self.chain:
            while len(chain) > 1:
                await self._chain_remove(chain[1])

    async def _chain_add(self, wrapper: ToxicWrapper) -> None:
        chain = self.chain[wrapper.direction]
        wrapper.index = len(chain)
        chain.append(wrapper)
        await self._on_links(wrapper.direction, lambda link: link.add_toxic(wrapper))

    async def _chain_remove(self, wrapper: ToxicWrapper) -> None:
        chain = self.chain[wrapper.direction]
        index = wrapper.index
        del chain[index]
        for i in range(index, len(chain)):
            chain[i].index = i
        await self._on_links(wrapper.direction,
                             lambda link: link.remove_toxic(wrapper, index))
        wrapper.index = -1

    async def _on_links(self, direction: int, change: Any) -> None:
        """Apply ``change`` to every live link of ``direction`` at once. The set of links is
        taken now: a link that starts later is built from the already changed chain."""
        links = [link for link in self.links if link.direction == direction]
        if links:
            await asyncio.gather(*(change(link) for link in links))

