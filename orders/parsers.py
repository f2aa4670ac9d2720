"""JSON parsing that keeps money exact: numbers become `Decimal` (never `float`), and the
non-standard NaN/Infinity literals are refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number this API accepts")


class JSONNumber(Decimal):
    """A JSON number as a Decimal that remembers how the client wrote it: Decimal itself prints
    `0.0000001` as `1E-7` and `1e-3` as `0.001`, so only the literal says whether it had an
    exponent."""

    __slots__ = ("literal",)

    def __new__(cls, literal: str) -> JSONNumber:
        number = super().__new__(cls, literal)
        number.literal = literal
        return number


def loads_exact(text: str | bytes) -> Any:
    return json.loads(text, parse_float=JSONNumber, parse_constant=_refuse_constant)


class ExactJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        try:
            return loads_exact(stream.read())
        except (ValueError, RecursionError) as error:
            raise ParseError(f"JSON parse error - {error}") from error
