"""The official `openai` SDK through `flowgate all` storing everything in MariaDB (a throwaway
database on the local server, named by the SQLAlchemy URL a Python service would hold): chat,
a stream, a Responses conversation continued with `previous_response_id` (stored responses), and
the audit trail read back through the management API. Skipped without MariaDB on a laptop; a
failure under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import httpx
import openai
import pytest
from sdk_support import CONFIG, start_stack, wait_until

MARIADB = ["mariadb", "-uroot", "-h127.0.0.1", "-P3306"]


def _mariadb(sql: str) -> None:
    subprocess.run([*MARIADB, "-e", sql], check=True, capture_output=True, text=True, timeout=20)


@pytest.fixture(scope="module")
def maria_stack():
    missing = shutil.which("mariadb") is None
    if not missing:
        try:
            _mariadb("SELECT 1")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            missing = True
    if missing:
        if os.environ.get("CI") in ("true", "1"):
            pytest.fail("CI=true and MariaDB (127.0.0.1:3306, the mariadb client) is unavailable")
        pytest.skip("MariaDB is unavailable")
    name = f"flowgate_sdk_{uuid.uuid4().hex}"
    _mariadb(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    stack = start_stack(CONFIG, {"DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:3306/{name}"})
    try:
        yield stack
    finally:
        stack.stop()
        _mariadb(f"DROP DATABASE IF EXISTS {name}")


def test_the_openai_sdk_works_with_every_record_in_mariadb(maria_stack):
    admin = {"Authorization": f"Bearer {maria_stack.admin_key}"}
    tenant = httpx.post(
        f"{maria_stack.api_url}/api/enterprise/tenants",
        headers=admin,
        json={"name": "maria-keeps", "store_prompts": True},
        timeout=10,
    )
    assert tenant.status_code == 201, tenant.text
    created = maria_stack.create_key(tenant_id=tenant.json()["id"])
    client = openai.OpenAI(api_key=created["key"], base_url=f"{maria_stack.proxy_url}/v1", max_retries=0)

    chat = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "bonjour \U0001F600 from MariaDB"}]
    )
    assert chat.choices[0].message.content
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "stream please"}], stream=True
        )
        if chunk.choices
    )
    assert streamed

    first = client.responses.create(model="gpt-test", input="remember the word teal", store=True)
    assert first.output_text
    second = client.responses.create(model="gpt-test", input="which word?", previous_response_id=first.id)
    assert second.output_text

    def audited() -> list:
        page = httpx.get(
            f"{maria_stack.api_url}/api/audit", params={"key_id": created["id"]}, headers=admin, timeout=10
        )
        assert page.status_code == 200, page.text
        return page.json()["items"]

    assert wait_until(lambda: len(audited()) >= 4, timeout=10), audited()
    items = audited()
    assert {item["model_requested"] for item in items} == {"gpt-test"}
    assert any(item["stream"] for item in items)
