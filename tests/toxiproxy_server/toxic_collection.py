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


#: The Go type UpdateToxicJson decodes a body into, as its decode errors print it.
UPDATE_TYPE = ('struct { Attributes interface {} "json:\\"attributes\\""; '
               'Toxicity float32 "json:\\"toxicity\\"" }')


def _decode_attributes(toxic: Toxic, attributes: dict[str, Any]) -> gojson.DecodeError | None:
    """Decode an ``attributes`` object into ``toxic`` in place, as Go's encoding/json does:
    pair by pair in document order, a value of the wrong type is skipped, every other known
    attribute is set at once (even after a bad one), unknown keys are ignored, null leaves an
    attribute as it was. Returns the first error (Go reports only that one), or None."""
    names = set(toxic.attribute_names())
    first: gojson.DecodeError | None = None
    for key, value in gojson.pairs(attributes):
        if key not in names:
            continue
        target = f"Go struct field {toxic.go_struct()}.attributes.{key}"
        try:
            checked = gojson.check(value, target, toxic.go_field_type)
        except gojson.DecodeError as exc:
            first = first or exc
            continue
        if checked is not None:
            setattr(toxic, key, checked)
    return first


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
        fields: dict[str, Any] = {}
        first: gojson.DecodeError | None = None
        for key, value in gojson.pairs(obj):  # Go's first decode, into a noop toxic
            go_type = {"name": "string", "type": "string", "stream": "string",
                       "toxicity": "float32"}.get(key)
            try:
                if go_type is not None:
                    checked = gojson.check(value, f"Go struct field ToxicWrapper.{key}", go_type)
                    fields[key] = fields.get(key) if checked is None else checked
                elif key == "attributes" and not isinstance(value, dict | None):
                    raise gojson.type_error(value, "Go struct field ToxicWrapper.attributes",
                                            "toxics.NoopToxic")
            except gojson.DecodeError as exc:
                first = first or exc
        if first is not None:
            raise bad_request_body(first)
        stream = fields.get("stream")
        stream = "downstream" if stream is None else stream
        direction = parse_direction(stream)
        if direction is None:
            raise invalid_stream()
        type_name = fields.get("type") or ""
        name = fields.get("name") or f"{type_name}_{stream}"
        if type_name not in REGISTRY:
            raise invalid_toxic_type()
        if self.find(name) is not None:
            raise toxic_already_exists()
        toxic = REGISTRY[type_name]()
        for key, value in gojson.pairs(obj):  # Go's second decode, into the new toxic
            if key == "attributes" and value is not None:
                error = _decode_attributes(toxic, value)
                if error is not None:
                    raise bad_request_body(error)
        toxicity = fields.get("toxicity")
        wrapper = ToxicWrapper(name, type_name, stream, 1.0 if toxicity is None else toxicity,
                               toxic, direction)
        await self._chain_add(wrapper)
        return wrapper

    async def update_json(self, name: str, body: bytes) -> ToxicWrapper:
        """Merge ``{"attributes": {...}, "toxicity": x}`` into a toxic; the rest is fixed.

        As in Go, the attributes are decoded into the live toxic: when one has the wrong type
        the answer is 400, yet the good ones are already stored (and running links see them);
        the toxicity is stored, and the links restarted, only when the whole body decodes."""
        wrapper = self.get(name)
        obj = _decode_object(body, UPDATE_TYPE)
        toxicity: float | None = None
        first: gojson.DecodeError | None = None
        for key, value in gojson.pairs(obj):
            try:
                if key == "toxicity":
                    checked = gojson.check(value, "Go struct field .toxicity", "float32")
                    toxicity = toxicity if checked is None else checked
                elif key == "attributes" and value is not None:
                    if not isinstance(value, dict):
                        raise gojson.type_error(value, "Go struct field .attributes",
                                                f"toxics.{wrapper.toxic.go_struct()}")
                    error = _decode_attributes(wrapper.toxic, value)
                    if error is not None:
                        raise error
            except gojson.DecodeError as exc:
                first = first or exc
        if first is not None:
            raise bad_request_body(first)
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

