"""A protobuf message as the JSON the page reads, by the message's own descriptor: field
names as in the proto, enum values as short lower-case words (STRATEGY_COLD_START ->
"cold_start"), timestamps as ISO 8601 strings, and whatever is absent (an unset message
or optional field) as null. A field added to the proto reaches the page with no edit
here. protobuf's MessageToDict is not used: it writes 64-bit integers as strings and
drops absent fields, where the page wants numbers and nulls.

Where a value means more than its type says, the message type has a rule (`RULES`):
metrics that a split cannot measure are null, never 0, and a forecast's -1 is null."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from hitl.v1 import common_pb2, trainer_pb2


def enum_words(enum: EnumDescriptor) -> dict[int, str]:
    """LABEL_POSITIVE -> "positive" (UNSPECIFIED omitted), from the enum's descriptor."""
    prefix = enum.values[0].name.removesuffix("UNSPECIFIED")
    return {v.number: v.name.removeprefix(prefix).lower() for v in enum.values if v.number}


def to_json(message: Message) -> dict[str, Any]:
    rule = RULES.get(message.DESCRIPTOR.full_name)
    if rule is not None:
        return rule(message)
    return _fields(message)


def _fields(message: Message) -> dict[str, Any]:
    return {f.name: _field(message, f) for f in message.DESCRIPTOR.fields}


def _field(message: Message, field: Any) -> Any:
    value = getattr(message, field.name)
    if field.is_repeated:
        return [_value(v, field) for v in value]
    if field.has_presence and not message.HasField(field.name):
        return None
    return _value(value, field)


def _value(value: Any, field: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return value.ToJsonString()
        return to_json(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return enum_words(field.enum_type).get(value, "unknown")
    return value


def _metrics(m: Message) -> dict[str, Any]:
    """What the split cannot measure is null, never 0 (which would read as a failing
    model): F1, precision, recall and average precision need a positive item, ROC AUC
    both classes."""
    values = _fields(m)
    some = values["positives"] > 0
    both = some and values["negatives"] > 0
    for name in ("f1", "precision", "recall", "average_precision"):
        values[name] = values[name] if some else None
    values["roc_auc"] = values["roc_auc"] if both else None
    return values


def _forecast(f: Message) -> dict[str, Any]:
    """-1 means "not bounded by the curve so far": JSON says so with null."""
    values = _fields(f)
    for name in ("labels", "high"):
        values[name] = values[name] if values[name] >= 0 else None
    return values


RULES: dict[str, Callable[[Any], dict[str, Any]]] = {
    common_pb2.Metrics.DESCRIPTOR.full_name: _metrics,
    trainer_pb2.Forecast.DESCRIPTOR.full_name: _forecast,
}
