"""The data converter every client and worker uses: pydantic models as JSON without the fields
that hold their default values.

A journey's payloads are a large part of its history's bytes, and Temporal keeps every byte of
every history. A field left out reads back as its default, so the values are the same on both
sides: what changes is only that the JSON holds what was decided, not what was not (a send's
``ignore_caps: false``, a state's empty lists). One rule follows: a field's default may never
change, since old payloads would then read differently.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

__all__ = ["data_converter"]


class _WithoutDefaults(PydanticJSONPlainPayloadConverter):
    """pydantic's JSON converter; a model is written without its default-valued fields."""

    def to_payload(self, value: Any) -> Payload | None:
        if isinstance(value, BaseModel):
            return Payload(metadata={"encoding": self.encoding.encode()},
                           data=value.model_dump_json(exclude_defaults=True).encode())
        return super().to_payload(value)


class JourneyPayloadConverter(CompositePayloadConverter):
    """Temporal's default converters, with JSON through pydantic (``_WithoutDefaults``)."""

    def __init__(self) -> None:
        json = _WithoutDefaults()
        super().__init__(*(json if isinstance(c, JSONPlainPayloadConverter) else c
                           for c in DefaultPayloadConverter.default_encoding_payload_converters))


data_converter = DataConverter(payload_converter_class=JourneyPayloadConverter)
