"""Refusing requests whose values hold control characters, before any view runs.

NUL and the other C0 control characters (tab, line feed and carriage return apart) and DEL
have no place in a name, an address, a topic or a bounce report; PostgreSQL refuses NUL,
and headers must never get one. So any form field, query parameter or JSON string (keys
included, and JSON inside a string, as SNS sends it) holding one is refused as a whole
with a 400 that names the field: an HTML page for the forms, one line of text for the
webhooks. Nothing is stored, nothing is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from flask import Response, render_template, request

#: What no value may hold (the same characters the CSV import and the service refuse).
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: A webhook body nested deeper than this is not looked into (json.loads refuses far
#: deeper ones anyway).
MAX_DEPTH = 64
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def first_control(pairs: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first (name, value) pair with a control character in either."""
    for name, value in pairs:
        if CONTROL.search(name) or CONTROL.search(value):
            return CONTROL.sub("?", name)[:40]
    return None


def json_control(value: Any, where: str = "body", depth: int = 0) -> str | None:
    """Where in a JSON value a string (or a key) holds a control character, or None."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, str):
        if CONTROL.search(value):
            return where
        if value.startswith(("{", "[")):  # JSON in a string: the Message of an SNS post
            return json_control(_parsed(value), where, depth + 1)
        return None
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = value.items()
    elif isinstance(value, list):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return None
    for key, item in items:
        if CONTROL.search(str(key)):
            return CONTROL.sub("?", str(key))[:40]
        found = json_control(item, str(key)[:40], depth + 1)
        if found:
            return found
    return None


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None  # the view answers what is wrong with it


def refuse_control_characters() -> tuple[str, int] | Response | None:
    """``before_request``: a 400 for a request holding a control character, else None."""
    if request.method != "POST":
        field = first_control(request.args.items(multi=True))
    elif request.mimetype not in FORM_TYPES:  # webhooks: JSON, or SNS's text/plain JSON
        body = _parsed(request.get_data(as_text=True))
        field = first_control(request.args.items(multi=True)) or json_control(body)
        if field:
            return Response(
                f"refused: {field!r} holds a control character (such as NUL); nothing was stored\n",
                status=400,
                mimetype="text/plain",
            )
        return None
    else:
        pairs = [*request.args.items(multi=True), *request.form.items(multi=True)]
        field = first_control(pairs)
    if field is None:
        return None
    return render_template("site/bad_input.html", field=field), 400
