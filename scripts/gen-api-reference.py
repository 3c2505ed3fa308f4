#!/usr/bin/env python3
"""Generates docs/api-reference.md, the management API reference, from docs/openapi.json.

    python3 scripts/gen-api-reference.py            # rewrite docs/api-reference.md
    python3 scripts/gen-api-reference.py --check    # exit 1 if the checked-in file is stale

Standard library only. The output is deterministic (document order, no timestamps), so a test
regenerates it and fails when the checked-in file differs (tests/deploy/test_api_reference.py).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO_ROOT / "docs" / "openapi.json"
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "api-reference.md"
METHODS = ("get", "post", "put", "patch", "delete")

# Keywords shown in the "constraints" part of a field's description, in this order.
CONSTRAINTS = (
    ("const", "always {}"),
    ("default", "default {}"),
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "min length {}"),
    ("maxLength", "max length {}"),
    ("minItems", "min items {}"),
    ("maxItems", "max items {}"),
    ("pattern", "matches `{}`"),
    ("format", "format {}"),
)


class Spec:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Follows a local `$ref` (one level at a time, until a non-ref node)."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen or not ref.startswith("#/"):
                raise ValueError(f"cannot resolve {ref}")
            seen.add(ref)
            target: Any = self.doc
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node


def schema_anchor(name: str) -> str:
    return f"schema-{name.lower()}"


def operation_anchor(method: str, path: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in path.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"op-{method}-{slug}"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def literal(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def type_of(spec: Spec, schema: dict[str, Any]) -> str:
    """A short Markdown rendering of a schema's type: links for named schemas."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#{schema_anchor(name)})"
    for combinator, joiner in (("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")):
        if combinator in schema:
            return joiner.join(type_of(spec, part) for part in schema[combinator])
    if "enum" in schema:
        return " | ".join(literal(v) for v in schema["enum"])
    if "const" in schema and "type" not in schema:
        return literal(schema["const"])
    types = schema.get("type")
    if types is None:
        return "any"
    if isinstance(types, str):
        types = [types]
    rendered = []
    for t in types:
        if t == "array":
            items = schema.get("items")
            rendered.append(f"array of {type_of(spec, items)}" if items else "array")
        elif t == "object" and isinstance(schema.get("additionalProperties"), dict):
            rendered.append("map of " + ("object" if "properties" in schema["additionalProperties"] else
                                         type_of(spec, schema["additionalProperties"])))
        else:
            rendered.append(t)
    return " | ".join(rendered)


def constraints(schema: dict[str, Any]) -> list[str]:
    found = []
    for key, template in CONSTRAINTS:
        if key in schema:
            value = schema[key]
            shown = value if key in ("pattern", "format") else json.dumps(value, ensure_ascii=False)
            found.append(template.format(shown))
    if schema.get("examples"):
        found.append("e.g. " + ", ".join(literal(v) for v in schema["examples"]))
    return found


def describe(schema: dict[str, Any]) -> str:
    parts = []
    if schema.get("description"):
        parts.append(schema["description"].strip())
    extra = constraints(schema)
    if extra:
        parts.append("(" + "; ".join(extra) + ")")
    return " ".join(parts)


def placeholder(spec: Spec, schema: dict[str, Any]) -> Any:
    """An example value for a required request field."""
    schema = spec.resolve(schema)
    if "examples" in schema and schema["examples"]:
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    t = t[0] if isinstance(t, list) else t
    return {"string": "...", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(t, "...")


def render_operation(spec: Spec, method: str, path: str, op: dict[str, Any], out: list[str]) -> None:
    out.append(f'<a id="{operation_anchor(method, path)}"></a>')
    out.append(f"### `{method.upper()} {path}` — {op.get('summary', '')}".rstrip(" —"))
    out.append("")
    secured = op.get("security", spec.doc.get("security", [])) != []
    facts = [f"operationId `{op['operationId']}`"] if "operationId" in op else []
    facts.append("admin key required" if secured else "no authentication")
    out.append(" · ".join(facts))
    out.append("")
    if op.get("description"):
        out.append(op["description"].strip())
        out.append("")

    params = [spec.resolve(p) for p in op.get("parameters", [])]
    if params:
        out.append("| parameter | in | type | required | description |")
        out.append("|---|---|---|---|---|")
        for p in params:
            schema = p.get("schema", {})
            text = " ".join(x for x in (p.get("description", ""), describe({**schema, "description": ""})) if x)
            out.append(
                f"| `{p['name']}` | {p['in']} | {cell(type_of(spec, schema))} | "
                f"{'yes' if p.get('required') else 'no'} | {cell(text)} |"
            )
        out.append("")

    body = op.get("requestBody")
    body_example = None
    if body:
        body = spec.resolve(body)
        for media, content in body.get("content", {}).items():
            required = "required" if body.get("required") else "optional"
            out.append(f"**Request body** (`{media}`, {required}): {type_of(spec, content.get('schema', {}))}")
            target = spec.resolve(content.get("schema", {}))
            if body.get("required") and target.get("type") == "object":
                names = target.get("required") or list(target.get("properties", {}))[:1]
                body_example = {name: placeholder(spec, target["properties"][name]) for name in names}
        out.append("")

    out.append("| status | meaning | body |")
    out.append("|---|---|---|")
    for status, response in op.get("responses", {}).items():
        response = spec.resolve(response)
        bodies = [
            f"{type_of(spec, c.get('schema', {}))} (`{media}`)" if media != "application/json" else
            type_of(spec, c.get("schema", {}))
            for media, c in response.get("content", {}).items()
        ]
        out.append(f"| {status} | {cell(response.get('description', ''))} | {cell(', '.join(bodies)) or '—'} |")
    out.append("")

    url_path = path.replace("{", "$").replace("}", "").replace("$id", "$ID")
    method_flag = "" if method == "get" else f" -X {method.upper()}"
    curl = [f'curl -s{method_flag} "$FLOWGATE_API{url_path}"']
    if secured:
        curl.append('-H "Authorization: Bearer $ADMIN_API_KEY"')
    if body_example is not None:
        curl.append("-H 'Content-Type: application/json'")
        curl.append(f"-d '{json.dumps(body_example, ensure_ascii=False)}'")
    out.append("```bash")
    out.append(" \\\n  ".join(curl))
    out.append("```")
    out.append("")


def field_rows(spec: Spec, name: str, prop: dict[str, Any], required: bool, out: list[str]) -> None:
    """A table row for a field, then rows for the fields of an inline object (`error.code`) or of
    the values of an inline map (`checks.*.status`)."""
    out.append(f"| `{name}` | {cell(type_of(spec, prop))} | {'yes' if required else 'no'} | {cell(describe(prop))} |")
    if "$ref" in prop:
        return
    nested = prop.get("properties")
    prefix = name
    if not nested and isinstance(prop.get("additionalProperties"), dict):
        nested = prop["additionalProperties"].get("properties")
        prefix = f"{name}.*"
        prop = prop["additionalProperties"]
    for sub, sub_prop in (nested or {}).items():
        field_rows(spec, f"{prefix}.{sub}", sub_prop, sub in set(prop.get("required", [])), out)


def render_schema(spec: Spec, name: str, schema: dict[str, Any], out: list[str]) -> None:
    out.append(f'<a id="{schema_anchor(name)}"></a>')
    out.append(f"### `{name}`")
    out.append("")
    if schema.get("description"):
        out.append(schema["description"].strip())
        out.append("")

    objects = []
    if "allOf" in schema:
        refs = [part for part in schema["allOf"] if "$ref" in part]
        if refs:
            out.append("Every field of " + ", ".join(type_of(spec, r) for r in refs) + ", plus:")
            out.append("")
        objects = [part for part in schema["allOf"] if "$ref" not in part]
    elif schema.get("type") == "object" or "properties" in schema:
        objects = [schema]

    if not objects:
        out.append(f"Type: {type_of(spec, schema)}.")
        extra = constraints(schema)
        if "oneOf" in schema or "anyOf" in schema:
            for part in schema.get("oneOf", schema.get("anyOf", [])):
                out.append(f"- {type_of(spec, part)}" + (f" ({'; '.join(constraints(part))})" if constraints(part) else ""))
        elif extra:
            out.append("")
            sentence = "; ".join(extra)
            out.append(sentence[:1].upper() + sentence[1:] + ".")
        out.append("")
        return

    for obj in objects:
        properties = obj.get("properties", {})
        required = set(obj.get("required", []))
        if properties:
            out.append("| field | type | required | description |")
            out.append("|---|---|---|---|")
            for field, prop in properties.items():
                field_rows(spec, field, prop, field in required, out)
            out.append("")
        additional = obj.get("additionalProperties")
        if additional is False:
            out.append("Unknown fields are rejected (`invalid_request`).")
            out.append("")
        elif additional is True and not properties:
            out.append("A free-form JSON object.")
            out.append("")
        elif isinstance(additional, dict) and not properties:
            out.append(f"A map from names to {type_of(spec, additional)}.")
            out.append("")


def render(doc: dict[str, Any]) -> str:
    spec = Spec(doc)
    info = doc.get("info", {})
    out: list[str] = []
    out.append(f"# {info.get('title', 'API')} reference")
    out.append("")
    out.append(
        "<!-- Generated by scripts/gen-api-reference.py from docs/openapi.json: do not edit by hand. "
        "Edit the OpenAPI document, then run `python3 scripts/gen-api-reference.py`. -->"
    )
    out.append("")
    version = f"Version {info['version']}." if "version" in info else ""
    out.append(" ".join(x for x in (info.get("summary", ""), version) if x))
    out.append("")
    if info.get("description"):
        out.append(info["description"].strip())
        out.append("")
    out.append(
        "The machine-readable document is [`openapi.json`](openapi.json), also served at "
        "`GET /api/openapi.json`. Task-oriented examples and the `flowgate keys` / `flowgate tenants` CLI "
        "are in [management-api.md](management-api.md)."
    )
    out.append("")
    out.append("```bash")
    servers = doc.get("servers", [])
    default_url = servers[0]["url"] if servers else "http://127.0.0.1:7778"
    out.append(f"export FLOWGATE_API={default_url}   # the api-server, or the public URL behind Caddy")
    out.append("export ADMIN_API_KEY=...")
    out.append("```")
    out.append("")

    if servers:
        out.append("**Servers:** " + "; ".join(f"`{s['url']}` ({s.get('description', '')})" for s in servers))
        out.append("")
    schemes = doc.get("components", {}).get("securitySchemes", {})
    for name, scheme in schemes.items():
        kind = f"HTTP {scheme.get('scheme', '')}".strip() if scheme.get("type") == "http" else scheme.get("type", "")
        out.append(f"**Authentication** (`{name}`, {kind}): {scheme.get('description', '').strip()}")
        out.append("")

    # Operations grouped by tag (tag order from the document, untagged last).
    tags = [t["name"] for t in doc.get("tags", [])]
    tag_descriptions = {t["name"]: t.get("description", t["name"]) for t in doc.get("tags", [])}
    grouped: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                op = item[method]
                tag = (op.get("tags") or ["other"])[0]
                grouped.setdefault(tag, []).append((method, path, op))
                if tag not in tags:
                    tags.append(tag)

    out.append("## Operations")
    out.append("")
    out.append("| method | path | summary | auth |")
    out.append("|---|---|---|---|")
    for tag in tags:
        for method, path, op in grouped.get(tag, []):
            secured = op.get("security", doc.get("security", [])) != []
            out.append(
                f"| {method.upper()} | [`{path}`](#{operation_anchor(method, path)}) | {cell(op.get('summary', ''))} | "
                f"{'admin key' if secured else 'none'} |"
            )
    out.append("")

    for tag in tags:
        if tag not in grouped:
            continue
        out.append(f"## {tag_descriptions.get(tag, tag)}")
        out.append("")
        for method, path, op in grouped[tag]:
            render_operation(spec, method, path, op, out)

    responses = doc.get("components", {}).get("responses", {})
    if responses:
        out.append("## Error responses")
        out.append("")
        out.append("| response | meaning | body |")
        out.append("|---|---|---|")
        for name, response in responses.items():
            bodies = [type_of(spec, c.get("schema", {})) for c in response.get("content", {}).values()]
            out.append(f"| `{name}` | {cell(response.get('description', ''))} | {cell(', '.join(bodies))} |")
        out.append("")

    schemas = doc.get("components", {}).get("schemas", {})
    if schemas:
        out.append("## Schemas")
        out.append("")
        for name, schema in schemas.items():
            render_schema(spec, name, schema, out)

    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="OpenAPI document (JSON)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown file to write")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if --output is stale")
    args = parser.parse_args()

    text = render(json.loads(args.input.read_text(encoding="utf-8")))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True), str(args.output), "regenerated"
            )
            sys.stdout.writelines(list(diff)[:200])
            print(f"\n{args.output} is stale: run python3 scripts/gen-api-reference.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
