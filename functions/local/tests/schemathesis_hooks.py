"""Loaded by `st` (SCHEMATHESIS_HOOKS) in the API's conformance run (openapi_conformance.rs).

Schemathesis 4.32.5 decides whether a negative multipart body became valid on the wire (a
number sent as the text "5" for a string field, an empty list sent as no part at all) by
validating the fields actually sent against the form's schema. A file part keeps its raw
bytes there, which the validator cannot read ("Unsupported type: 'Binary'"), so any form with
a file counts as still invalid, and a server that reads the sent text as its schema says is
reported as accepting invalid data. This hands the validator each file part as text of the same
length for that one decision. Remove it with a Schemathesis version that reads file parts.
"""

import schemathesis.specs.openapi.checks as checks
from schemathesis.transport.serialization import Binary

_form_body_is_valid_as_sent = checks._form_body_is_valid_as_sent


def _as_text(value):
    if isinstance(value, Binary):
        return value.data.decode("latin-1")
    if isinstance(value, list):
        return [_as_text(item) for item in value]
    return value


def _with_file_parts_as_text(response, case, media_type):
    body = case.body
    if not isinstance(body, dict):
        return _form_body_is_valid_as_sent(response, case, media_type)
    case.body = {name: _as_text(value) for name, value in body.items()}
    try:
        return _form_body_is_valid_as_sent(response, case, media_type)
    finally:
        case.body = body


checks._form_body_is_valid_as_sent = _with_file_parts_as_text
