"""Write the Postman collection (postman/order-engine.postman_collection.json) from the OpenAPI
schema that /api/schema serves, so the collection never drifts from the API.

    uv run python postman/generate.py          # rewrite the collection
    uv run python postman/generate.py --check  # exit 1 when it is out of date

Every path and method of the schema becomes a request (path parameters become collection
variables, query parameters come with example values, optional ones disabled), plus a few
ready-made variants (limit and sniper orders) and the pages outside the schema (the dashboard,
the admin, the schema and its docs). Submitting an order stores its id in `{{orderId}}`, so the
order's own requests work next.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = Path(__file__).resolve().parent / "order-engine.postman_collection.json"
SCHEMA_URL = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
NAME = "Order execution engine"

VARIABLES = {
    "baseUrl": "http://127.0.0.1:8000",
    "wallet": "6xKS8hCXqh5VCBKhNJ6YJJqzqGwKCyp8CYVDJqmz3Lez",
    "orderId": "",
    "apiToken": "",
}
# Example values for parameters and body fields, by name.
EXAMPLES: dict[str, str] = {
    "walletAddress": "{{wallet}}",
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amountIn": "1.5",
    "orderType": "market",
    "slippage": "1.0",
    "status": "confirmed",
    "limit": "50",
    "page": "1",
    "cursor": "",
    "Idempotency-Key": "{{$guid}}",
}
FIELD_ORDER = ("walletAddress", "tokenIn", "tokenOut", "amountIn", "orderType", "slippage")
VARIANTS = {
    "/api/orders/execute": [
        (
            "Submit a limit order",
            {"orderType": "limit", "limitPrice": "200"},
            "Waits pending until the best route pays at least `limitPrice` USDC per SOL, or "
            "expires at `expiresAt` (default 24 h).",
        ),
        (
            "Submit a sniper order",
            {"tokenOut": "ORCA", "amountIn": "0.5", "orderType": "sniper", "slippage": "5"},
            "Waits for the first pool of `tokenOut` to launch (admin: Pools → Launch a token, or "
            "`manage.py launch_token ORCA`), then buys at once within its slippage. ORCA is "
            "registered in the seed market but has no pool yet.",
        ),
    ]
}
PAGES = [
    ("Pages", "GET", "/", "The live dashboard."),
    ("Pages", "GET", "/admin/", "Django admin (staff)."),
    ("Schema and docs", "GET", "/api/schema", "The OpenAPI 3 schema this collection is made from."),
    ("Schema and docs", "GET", "/api/docs", "The browsable schema (Swagger UI, served locally)."),
]
WEBSOCKETS = "\n".join(
    [
        "WebSocket endpoints (open them with Postman's WebSocket request; not in this collection):",
        "- `ws://HOST/api/orders/execute`: send the order's JSON as the first message; the "
        "answer is `order.accepted`, then the order's updates.",
        "- `ws://HOST/ws/orders/<orderId>` or `ws://HOST/ws?orderId=<orderId>`: every event of "
        "one order so far, then the live ones.",
        '- `ws://HOST/ws`: every order\'s updates; send `{"action": "subscribe", "orderId": "…"}` '
        'to narrow it, `{"action": "ping"}` for `pong`.',
    ]
)


def _url(path: str, query: list[dict[str, Any]]) -> dict[str, Any]:
    templated = re.sub(r"\{(\w+)\}", lambda m: "{{" + _camel(m.group(1)) + "}}", path)
    raw = "{{baseUrl}}" + templated
    enabled = [q for q in query if not q.get("disabled")]
    if enabled:
        raw += "?" + "&".join(f"{q['key']}={q['value']}" for q in enabled)
    url: dict[str, Any] = {
        "raw": raw,
        "host": ["{{baseUrl}}"],
        "path": [p for p in templated.split("/") if p],
    }
    if query:
        url["query"] = query
    return url


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _query(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for p in sorted(
        (p for p in parameters if p.get("in") == "query"),
        key=lambda p: (not p.get("required"), p["name"]),
    ):
        schema = p.get("schema", {})
        value = EXAMPLES.get(p["name"])
        if value is None:
            value = str(schema.get("default", (schema.get("enum") or [""])[0]))
        row: dict[str, Any] = {"key": p["name"], "value": value}
        if not p.get("required"):
            row["disabled"] = True
        if p.get("description"):
            row["description"] = p["description"]
        rows.append(row)
    return rows


def _headers(operation: dict[str, Any], has_body: bool) -> list[dict[str, Any]]:
    headers: list[dict[str, Any]] = []
    if has_body:
        headers.append({"key": "Content-Type", "value": "application/json"})
    for p in operation.get("parameters", []):
        if p.get("in") == "header":
            headers.append(
                {
                    "key": p["name"],
                    "value": EXAMPLES.get(p["name"], ""),
                    "disabled": not p.get("required", False),
                    "description": p.get("description", ""),
                }
            )
    security = operation.get("security") or []
    if security and {} not in security:  # authentication required, not merely accepted
        headers.append(
            {
                "key": "Authorization",
                "value": "Token {{apiToken}}",
                "description": "A staff user's token (or log in to /admin/ in the same client).",
            }
        )
    return headers


def _body(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    resolved = components.get(ref.rsplit("/", 1)[-1], schema) if ref else schema
    props = resolved.get("properties", {})
    required = set(resolved.get("required", []))
    fields = [f for f in FIELD_ORDER if f in props and (f in required or f in EXAMPLES)]
    return {name: EXAMPLES[name] for name in fields}


def _request(
    name: str,
    method: str,
    path: str,
    operation: dict[str, Any],
    components: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    body_schema = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema")
    )
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": _headers(operation, body_schema is not None),
        "url": _url(path, _query(operation.get("parameters", []))),
        "description": description
        or "\n\n".join(x for x in (operation.get("summary"), operation.get("description")) if x),
    }
    if body_schema is not None:
        body = {**_body(body_schema, components), **(overrides or {})}
        request["body"] = {
            "mode": "raw",
            "raw": json.dumps(body, indent=2),
            "options": {"raw": {"language": "json"}},
        }
    item: dict[str, Any] = {"name": name, "request": request}
    if path == "/api/orders/execute" and method == "post":
        item["event"] = [
            {
                "listen": "test",
                "script": {
                    "type": "text/javascript",
                    "exec": [
                        "// Keep the new order's id for the requests that follow.",
                        "if (pm.response.code === 201 || pm.response.code === 200) {",
                        '    pm.collectionVariables.set("orderId", pm.response.json().orderId);',
                        "}",
                    ],
                },
            }
        ]
    return item


def _folder_of(path: str) -> str:
    if path.startswith("/api/orders"):
        return "Orders"
    if path.startswith("/api/quote"):
        return "Quotes"
    if path.startswith("/health"):
        return "Operations"
    return "Other"


def build_collection(schema: dict[str, Any]) -> dict[str, Any]:
    """The collection for `schema` (an OpenAPI 3 document as a dict); deterministic."""
    components = schema.get("components", {}).get("schemas", {})
    folders: dict[str, list[dict[str, Any]]] = {}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            name = operation.get("summary") or f"{method.upper()} {path}"
            items = folders.setdefault(_folder_of(path), [])
            items.append(_request(name, method, path, operation, components))
            if method == "post":
                for variant, overrides, text in VARIANTS.get(path, []):
                    items.append(
                        _request(variant, method, path, operation, components, overrides, text)
                    )
    for folder, method, path, text in PAGES:
        folders.setdefault(folder, []).append(
            {
                "name": f"{method} {path}",
                "request": {
                    "method": method,
                    "header": [],
                    "url": _url(path, []),
                    "description": text,
                },
            }
        )
    # Submitting comes first: it fills {{orderId}} for the order's own requests.
    folders.get("Orders", []).sort(
        key=lambda item: not item["request"]["url"]["raw"].endswith("/execute")
    )
    order = ["Orders", "Quotes", "Operations", "Schema and docs", "Pages", "Other"]
    info = schema.get("info", {})
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"order-engine/{NAME}")),
            "name": NAME,
            "description": (
                f"{info.get('description', '')}\n\nGenerated from the OpenAPI schema "
                f"(version {info.get('version', '?')}) by postman/generate.py; do not edit by "
                "hand. Set `baseUrl` to your server; submitting an order fills `orderId`.\n\n"
                + WEBSOCKETS
            ),
            "schema": SCHEMA_URL,
        },
        "item": [{"name": f, "item": folders[f]} for f in order if f in folders],
        "variable": [{"key": k, "value": v} for k, v in VARIABLES.items()],
    }


def current_schema() -> dict[str, Any]:
    """The schema exactly as GET /api/schema serves it, generated in-process."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema, renderer_context={}))


def render(collection: dict[str, Any]) -> str:
    return json.dumps(collection, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render(build_collection(current_schema()))
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.name} is out of date: run `uv run python postman/generate.py`")
            return 1
        print(f"{OUTPUT.name} is up to date")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
