"""rest-json on the wire: requests into an operation's input; outputs and errors into responses.

Each member is read from and written to where its model puts it (``location``: ``uri``,
``querystring``, ``header``, ``headers``, ``statusCode``, or the JSON body under its
``locationName``). Parsing is lenient about types: a value of the wrong type is passed on
as it came, for :func:`model.validate` to report with its path.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

__all__ = [
    "CannotParse",
    "Response",
    "error_response",
    "from_json",
    "output_response",
    "parse_output",
    "parse_request",
    "signing_service",
    "to_json",
]

Json = dict[str, Any]
JSON_TYPE = "application/json"
ERROR_TYPE_HEADER = "x-amzn-ErrorType"
REQUEST_ID_HEADER = "x-amzn-RequestId"
# A SigV4 Authorization header's credential scope: <key>/<date>/<region>/<service>/aws4_request
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/[^/,\s]+/[^/,\s]+/([^/,\s]+)/aws4_request")


class CannotParse(Exception):
    """The request's body is not what rest-json allows (not JSON, not an object)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


# --- requests -------------------------------------------------------------------------------


def signing_service(headers: Mapping[str, str]) -> str | None:
    """The service a SigV4-signed request's credential scope names (botocore signs with the
    model's ``signingName``), None when the request is not signed that way. The signature
    itself is not checked."""
    authorization = headers.get("Authorization")
    if authorization is None or not authorization.startswith("AWS4-HMAC-SHA256 "):
        return None
    found = _CREDENTIAL_SCOPE.search(authorization)
    return None if found is None else found[1]


def parse_request(
    operation: OperationModel,
    labels: Mapping[str, str],
    query: Mapping[str, Sequence[str]],
    headers: Mapping[str, str],
    body: bytes,
) -> Json:
    """The operation's input, in internal form, from the parts of an HTTP request.

    ``headers`` must be looked up case-insensitively (aiohttp's ``CIMultiDictProxy`` is).
    """
    shape = operation.input_shape
    if shape is None:
        return {}
    params: Json = {}
    query_names = {
        m.serialization.get("name", n)
        for n, m in shape.members.items()
        if m.serialization.get("location") == "querystring" and not isinstance(m, MapShape)
    }
    for name, member in shape.members.items():
        value = _located(member, name, labels, query, query_names, headers)
        if value is not None:
            params[name] = value
    params.update(_body(shape, body))
    return params


def _located(
    member: Shape,
    name: str,
    labels: Mapping[str, str],
    query: Mapping[str, Sequence[str]],
    query_names: set[str],
    headers: Mapping[str, str],
) -> object:
    location = member.serialization.get("location")
    wire_name = member.serialization.get("name", name)
    if location == "uri":
        return _from_text(member, labels[wire_name]) if wire_name in labels else None
    if location == "querystring":
        if isinstance(member, MapShape):
            rest = {k: v for k, v in query.items() if k not in query_names}
            return {k: _from_text(member.value, v[0]) for k, v in rest.items()} or None
        values = query.get(wire_name)
        if not values:
            return None
        if isinstance(member, ListShape):
            return [_from_text(member.member, v) for v in values]
        return _from_text(member, values[0])
    if location == "header":
        text = headers.get(wire_name)
        return None if text is None else _from_header(member, text)
    if location == "headers":
        prefix = wire_name.lower()
        found = {k[len(prefix) :]: v for k, v in headers.items() if k.lower().startswith(prefix)}
        return found or None
    return None


def _body(shape: StructureShape, body: bytes) -> Json:
    payload = shape.serialization.get("payload")
    if payload is not None:
        member = shape.members[payload]
        if member.type_name == "blob":
            return {payload: body} if body else {}
        if member.type_name == "string":
            return {payload: body.decode("utf-8", "replace")} if body else {}
        return {payload: from_json(member, _json_object(body))} if body else {}
    if not body.strip():
        return {}
    document = _json_object(body)
    params: Json = {}
    for name, member in shape.members.items():
        if member.serialization.get("location") is not None:
            continue
        value = document.get(member.serialization.get("name", name))
        if value is not None:
            params[name] = from_json(member, value)
    return params


def _json_object(body: bytes) -> Json:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CannotParse(f"The request body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise CannotParse("The request body must be a JSON object")
    return document


def from_json(shape: Shape, value: object, *, keep_unknown: bool = False) -> object:
    """A JSON value in internal form; unknown structure members are dropped (as AWS ignores
    them) unless ``keep_unknown`` (then kept under their wire name, for validation)."""
    if isinstance(shape, StructureShape):
        if shape.is_document_type or not isinstance(value, dict):
            return value
        by_wire = {m.serialization.get("name", n): n for n, m in shape.members.items()}
        result: Json = {}
        for key, item in value.items():
            if item is None:
                continue
            name = by_wire.get(key)
            if name is not None:
                result[name] = from_json(shape.members[name], item, keep_unknown=keep_unknown)
            elif keep_unknown:
                result[key] = item
        return result
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [from_json(shape.member, item, keep_unknown=keep_unknown) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {k: from_json(shape.value, v, keep_unknown=keep_unknown) for k, v in value.items()}
    if shape.type_name == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
    if shape.type_name == "timestamp" and isinstance(value, str):
        try:  # a member whose timestampFormat is iso8601 (Bedrock sessions') comes as text
            return _timestamp_text(value)
        except ValueError:
            return value
    return value


def _from_text(shape: Shape, text: str) -> object:
    """A URI label or query value in internal form (left as text when it does not parse)."""
    kind = shape.type_name
    try:
        if kind in ("integer", "long", "short", "byte"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
        if kind == "timestamp":
            return _timestamp_text(text)
        if kind == "blob":
            return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return text
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text


def _from_header(shape: Shape, text: str) -> object:
    if shape.type_name == "timestamp":
        try:
            return parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError):
            return _from_text(shape, text)
    if shape.serialization.get("jsonvalue"):
        try:
            return json.loads(base64.b64decode(text))
        except (binascii.Error, ValueError):
            return text
    return _from_text(shape, text)


def _timestamp_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- responses ------------------------------------------------------------------------------


def output_response(operation: OperationModel, output: Mapping[str, Any]) -> Response:
    """The success response carrying ``output``: the operation's ``responseCode``, header
    members as headers, the rest as a JSON body."""
    status = int(operation.http.get("responseCode", 200))
    headers = {"Content-Type": JSON_TYPE, REQUEST_ID_HEADER: str(uuid.uuid4())}
    shape = operation.output_shape
    if shape is None:
        return Response(status, b"{}", headers)
    document: Json = {}
    for name, member in shape.members.items():
        value = output.get(name)
        if value is None:
            continue
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "header":
            headers[wire_name] = _to_header(member, value)
        elif location == "headers":
            headers.update({f"{wire_name}{k}": str(v) for k, v in value.items()})
        elif location == "statusCode":
            status = int(value)
        else:
            document[wire_name] = to_json(member, value)
    payload = shape.serialization.get("payload")
    if payload is not None:
        return Response(status, _payload_body(shape.members[payload], output.get(payload)), headers)
    return Response(status, _dumps(document), headers)


def error_response(error: Shape, message: str, fields: Mapping[str, Any]) -> Response:
    """An error as botocore's rest-json parser reads it: the status from the error shape,
    ``x-amzn-ErrorType: <ShapeName>`` and a JSON body with ``message``."""
    settings = error.metadata.get("error", {})
    fault = not settings.get("senderFault", False)
    status = int(settings.get("httpStatusCode", 500 if fault else 400))
    document: Json = {"message": message}
    if isinstance(error, StructureShape):
        for name, value in fields.items():
            member = error.members.get(name)
            if member is not None and value is not None:
                document[member.serialization.get("name", name)] = to_json(member, value)
    headers = {
        "Content-Type": JSON_TYPE,
        ERROR_TYPE_HEADER: error.name,
        REQUEST_ID_HEADER: str(uuid.uuid4()),
    }
    return Response(status, _dumps(document), headers)


def to_json(shape: Shape, value: Any) -> Any:
    """An internal value as JSON: member names become wire names, blobs base64."""
    if isinstance(shape, StructureShape):
        if shape.is_document_type:
            return value
        return {
            shape.members[name].serialization.get("name", name): to_json(shape.members[name], v)
            for name, v in value.items()
            if v is not None
        }
    if isinstance(shape, ListShape):
        return [to_json(shape.member, item) for item in value]
    if isinstance(shape, MapShape):
        return {k: to_json(shape.value, v) for k, v in value.items()}
    if shape.type_name == "blob":
        return base64.b64encode(value).decode("ascii")
    return value


def _to_header(shape: Shape, value: Any) -> str:
    if shape.type_name == "timestamp":
        return formatdate(float(value), usegmt=True)
    if shape.type_name == "boolean":
        return "true" if value else "false"
    if shape.serialization.get("jsonvalue"):
        return base64.b64encode(_dumps(value)).decode("ascii")
    return str(value)


def _payload_body(member: Shape, value: Any) -> bytes:
    if value is None:
        return b""
    if member.type_name == "blob":
        return bytes(value)
    if member.type_name == "string":
        return str(value).encode()
    return _dumps(to_json(member, value))


def _dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def parse_output(
    operation: OperationModel, headers: Mapping[str, str], body: bytes
) -> dict[str, object]:
    """A success response read back into internal form, unknown members kept: what a test
    validates against the output shape."""
    shape = operation.output_shape
    if shape is None:
        return {}
    document = json.loads(body) if body.strip() else {}
    result = from_json(shape, document, keep_unknown=True)
    assert isinstance(result, dict)
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, member in shape.members.items():
        if member.serialization.get("location") == "header":
            text = lowered.get(member.serialization.get("name", name).lower())
            if text is not None:
                result[name] = _from_header(member, text)
    return result
