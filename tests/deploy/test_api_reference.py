"""docs/api-reference.md is generated from docs/openapi.json by scripts/gen-api-reference.py: the
checked-in file must be exactly what the generator produces now and cover every operation and
schema. (That docs/openapi.json is what the api-server serves, and lists exactly its routes, is
checked on the Rust side: the binary embeds the file and a unit test compares it to the router.)"""

from __future__ import annotations

import json
import subprocess
import sys

from deploy_support import REPO_ROOT

GENERATOR = REPO_ROOT / "scripts" / "gen-api-reference.py"
OPENAPI = REPO_ROOT / "docs" / "openapi.json"
REFERENCE = REPO_ROOT / "docs" / "api-reference.md"
FIX = "run: python3 scripts/gen-api-reference.py"


def generate(tmp_path, source=OPENAPI):
    out = tmp_path / "api-reference.md"
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--input", str(source), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out.read_text(encoding="utf-8")


def test_checked_in_reference_is_up_to_date(tmp_path):
    assert REFERENCE.exists(), FIX
    regenerated = generate(tmp_path)
    assert REFERENCE.read_text(encoding="utf-8") == regenerated, f"docs/api-reference.md is stale; {FIX}"


def test_check_mode_detects_a_stale_file(tmp_path):
    ok = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # An operation added to the document makes the checked-in reference stale.
    doc = json.loads(OPENAPI.read_text(encoding="utf-8"))
    doc["paths"]["/api/enterprise/vkeys/{id}/freeze"] = {
        "post": {"operationId": "freezeKey", "tags": ["keys"], "summary": "Freeze a key", "responses": {}}
    }
    changed = tmp_path / "openapi.json"
    changed.write_text(json.dumps(doc), encoding="utf-8")
    stale = subprocess.run(
        [sys.executable, str(GENERATOR), "--input", str(changed), "--output", str(REFERENCE), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stale.returncode == 1
    assert "Freeze a key" in stale.stdout and "gen-api-reference.py" in stale.stderr
    assert "### `POST /api/enterprise/vkeys/{id}/freeze` — Freeze a key" in generate(tmp_path, changed)


def test_reference_covers_every_operation_schema_and_field():
    doc = json.loads(OPENAPI.read_text(encoding="utf-8"))
    text = REFERENCE.read_text(encoding="utf-8")
    operations = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            operations += 1
            assert f"### `{method.upper()} {path}`" in text, (method, path)
            assert f"operationId `{op['operationId']}`" in text
    assert operations >= 16
    for name, schema in doc["components"]["schemas"].items():
        assert f'<a id="schema-{name.lower()}"></a>' in text, name
        for field in schema.get("properties", {}):
            assert f"| `{field}` |" in text, (name, field)
    # Every link inside the document points at an anchor that exists.
    for anchor in {part.split(")")[0] for part in text.split("](#")[1:]}:
        assert f'<a id="{anchor}"></a>' in text, anchor
