"""The Postman collection: every path and method of the served OpenAPI schema is in it, it is
exactly what postman/generate.py makes of the current schema, and each of its requests works as
written (answered with a status the schema documents)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "postman" / "order-engine.postman_collection.json"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("postman_generate", ROOT / "postman/generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def schema(client) -> dict[str, Any]:
    response = client.get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.fixture
def collection() -> dict[str, Any]:
    return json.loads(COLLECTION.read_text())


def requests_of(collection: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for folder in collection["item"] for item in folder["item"]]


def as_schema_path(raw: str) -> str:
    """`{{baseUrl}}/api/orders/{{orderId}}/cancel?x=1` → `/api/orders/{order_id}/cancel`."""
    path = raw.removeprefix("{{baseUrl}}").split("?")[0]
    return re.sub(
        r"\{\{(\w+)\}\}", lambda m: "{" + re.sub(r"([A-Z])", r"_\1", m.group(1)).lower() + "}", path
    )


def test_every_path_and_method_of_the_schema_is_in_the_collection(schema, collection) -> None:
    wanted = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    present = {
        (item["request"]["method"], as_schema_path(item["request"]["url"]["raw"]))
        for item in requests_of(collection)
    }
    assert wanted, "the schema lists no paths"
    assert wanted - present == set()
    pages = {("GET", "/"), ("GET", "/admin/"), ("GET", "/api/schema"), ("GET", "/api/docs")}
    assert pages <= present


def test_the_collection_is_generated_from_the_current_schema(schema, collection) -> None:
    generated = _generator().build_collection(schema)
    assert generated == collection, (
        "postman/order-engine.postman_collection.json is out of date: "
        "run `uv run python postman/generate.py`"
    )
    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")


def _substitute(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\{\{(\$?\w+)\}\}", lambda m: variables.get(m.group(1), ""), text)


@pytest.mark.django_db
def test_every_request_in_the_collection_works_as_written(client, schema, collection) -> None:
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    variables["baseUrl"] = ""
    variables["$guid"] = "00000000-0000-4000-8000-000000000001"
    seen = []
    for item in requests_of(collection):
        request = item["request"]
        url = request["url"]
        path = _substitute(url["raw"].split("?")[0], variables)
        query = {
            q["key"]: _substitute(q["value"], variables)
            for q in url.get("query", [])
            if not q.get("disabled")
        }
        headers = {
            f"HTTP_{h['key'].upper().replace('-', '_')}": _substitute(h["value"], variables)
            for h in request["header"]
            if not h.get("disabled") and h["key"] != "Content-Type"
        }
        if request["method"] == "GET":
            response = client.get(path, query, **headers)
        else:
            body = _substitute(request.get("body", {}).get("raw", ""), variables)
            variables["$guid"] = variables["$guid"][:-1] + str(len(seen) % 10)  # one key each
            response = client.post(path, body, content_type="application/json", **headers)
        schema_path = as_schema_path(url["raw"])
        documented = schema["paths"].get(schema_path, {}).get(request["method"].lower())
        if documented is not None:
            # Documented answers only (the health check says 503 here: no worker runs).
            assert str(response.status_code) in documented["responses"], (
                item["name"],
                response.status_code,
                response.content[:300],
            )
        else:
            assert response.status_code in (200, 302), (item["name"], response.status_code)
        if path.endswith("/execute"):
            assert response.status_code == 201, (item["name"], response.content[:300])
            if not variables["orderId"]:
                variables["orderId"] = response.json()["orderId"]  # as the collection's script
        seen.append((item["name"], response.status_code))
    statuses = dict(seen)
    assert statuses["Cancel an order that has not started routing"] == 200
    assert statuses["One order with its full event history"] == 200
    assert statuses["Staff: send a failed or expired order back to pending"] == 401
