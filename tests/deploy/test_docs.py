"""docs/deployment.md and docs/operations.md tell the truth about the binary: every `flowgate ...`
command and option they show exists (`flowgate <command> [<subcommand>] --help`), and every
environment variable they name is read by the binary, set by a deployment file, or read by the
integration scripts. FLOWGATE__SECTION__KEY names are checked by the binary itself: an unknown
key stops it with a configuration error (exit 78)."""

from __future__ import annotations

import functools
import os
import re
import subprocess

import pytest
from deploy_support import REPO_ROOT, flowgate_binary

DOCS = [REPO_ROOT / "docs" / "deployment.md", REPO_ROOT / "docs" / "operations.md"]
EX_CONFIG = 78

# Files whose variables the docs may name: the deployment artefacts and the integration scripts.
SOURCES = [
    REPO_ROOT / "docker-compose.simple.yaml",
    REPO_ROOT / ".env.example",
    REPO_ROOT / "Caddyfile",
    REPO_ROOT / "Caddyfile.local",
    REPO_ROOT / "edge" / "wrangler.toml",
    REPO_ROOT / "scripts" / "integration_test.sh",
    REPO_ROOT / "scripts" / "integration_test.py",
    REPO_ROOT / "scripts" / "python-tests.sh",
]
# Placeholders in the prose, not variables.
PLACEHOLDERS = {"FLOWGATE__SECTION__KEY"}
ENV_NAME = re.compile(r"(?<![A-Za-z0-9_$.{/-])[A-Z][A-Z0-9]*(?:__?[A-Z0-9]+)+(?![A-Za-z0-9_(-])")
# `flowgate` at command position: line start, after a shell separator, `-- ` (kubectl exec),
# `exec <container> ` (compose exec), an install path, or an opening backtick.
INVOCATION = re.compile(
    r"(?:^[ \t]*|[;&|][ \t]*|--[ \t]+|\bexec[ \t]+[a-z-]+[ \t]+|/usr/local/bin/|`)flowgate((?:[ \t]+[a-z][a-z-]*){1,2})"
    r"([^`'|;&#\n]*)",
    re.M,
)


def code_of(text: str) -> str:
    """Fenced code blocks and inline code spans of a Markdown text."""
    fence = r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```"
    blocks = re.findall(fence, text, flags=re.M | re.S)
    rest = re.sub(fence, "", text, flags=re.M | re.S)
    spans = re.findall(r"`[^`\n]+`", rest)
    return "\n".join(blocks + spans)


def seed_env_names() -> set[str]:
    """The established names the binary reads (SEED_ENV in the settings module)."""
    source = (REPO_ROOT / "crates" / "flowgate-common" / "src" / "settings" / "load.rs").read_text()
    block = source.split("pub const SEED_ENV", 1)[1].split("];", 1)[0]
    names = set(re.findall(r'\("([A-Z0-9_]+)",', block))
    assert {"DATABASE_URL", "REDIS_URL", "ADMIN_API_KEY", "LOG_FORMAT"} <= names
    return names


@functools.cache
def help_text(*argv: str) -> tuple[int, str]:
    result = subprocess.run(
        [str(flowgate_binary()), *argv, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    return result.returncode, result.stdout + result.stderr


def sample_value(name: str) -> str:
    if name.endswith("_URL"):
        return "http://127.0.0.1:1"
    if name.endswith("TRUSTED_PROXIES"):
        return "127.0.0.1/32,10.0.0.0/8"
    if name.endswith("_PORT"):
        return "1"
    if name.endswith(("_MS", "_SECS")):
        return "1000"
    return "docs-check-value-0123456789abcdef0123456789"


def documented_env_names() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for doc in DOCS:
        for name in ENV_NAME.findall(doc.read_text(encoding="utf-8")):
            if name not in PLACEHOLDERS:
                found.setdefault(name, set()).add(doc.name)
    return found


def test_every_documented_environment_variable_exists():
    seeds = seed_env_names()
    _, cli_help = help_text()
    _, keys_help = help_text("keys")
    artefacts = "\n".join(path.read_text(encoding="utf-8") for path in SOURCES)
    documented = documented_env_names()
    assert len(documented) >= 25, sorted(documented)

    unknown = []
    structured = []
    for name in sorted(documented):
        if name.startswith("FLOWGATE__"):
            structured.append(name)
        elif name in seeds or name in cli_help or name in keys_help:
            continue
        elif re.search(rf"(?<![A-Z0-9_]){name}(?![A-Z0-9_])", artefacts):
            continue
        else:
            unknown.append(f"{name} (in {', '.join(sorted(documented[name]))})")
    assert not unknown, "documented but neither read by flowgate nor set by a deployment file:\n" + "\n".join(unknown)
    assert structured, "expected FLOWGATE__SECTION__KEY overrides in the docs"


def test_every_documented_flowgate_override_is_accepted_by_the_binary(tmp_path):
    """An unknown FLOWGATE__SECTION__KEY makes `flowgate healthcheck` exit 78 (configuration
    error); a known one gets as far as the health check (exit 1: nothing listens on port 1)."""
    binary = flowgate_binary()
    names = sorted(n for n in documented_env_names() if n.startswith("FLOWGATE__"))
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "FLOWGATE_DATA_DIR": str(tmp_path),
        "SERVICE_TYPE": "proxy",
        "FLOWGATE__PROXY__PORT": "1",
    }
    control = subprocess.run(
        [str(binary), "healthcheck"],
        env={**base, "FLOWGATE__PROXY__NO_SUCH_KEY": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert control.returncode == EX_CONFIG, control.stderr  # the probe is live
    rejected = []
    for name in names:
        env = {**base, name: sample_value(name)}
        if name == "FLOWGATE__PROXY__PORT":
            env[name] = "1"
        result = subprocess.run(
            [str(binary), "healthcheck"], env=env, capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode == EX_CONFIG:
            rejected.append(f"{name}: {result.stderr.strip()}")
    assert not rejected, "\n".join(rejected)


def invocations() -> list[tuple[str, list[str], list[str], str]]:
    """(doc, command words, options, line) for every `flowgate ...` command in the docs' code."""
    found = []
    for doc in DOCS:
        for match in INVOCATION.finditer(code_of(doc.read_text(encoding="utf-8"))):
            words = match.group(1).split()
            options = re.findall(r"(?<![\w-])--[a-z][a-z-]*", match.group(2))
            found.append((doc.name, words, options, match.group(0).strip()))
    return found


def test_every_documented_flowgate_command_and_option_exists():
    found = invocations()
    commands = {tuple(words[:1]) for _, words, _, _ in found}
    assert {("keys",), ("migrate",), ("healthcheck",)} <= commands, commands
    wrong = []
    for doc, words, options, line in found:
        code, text = help_text(words[0])
        if code != 0:
            wrong.append(f"{doc}: `{line}`: `flowgate {words[0]}` is not a command")
            continue
        argv = words[:1]
        if len(words) == 2:
            sub_code, sub_text = help_text(*words)
            subcommands = re.findall(r"^\s{2}([a-z][a-z-]*)\s{2,}", text.split("Commands:", 1)[-1], flags=re.M)
            if "Commands:" in text and words[1] in subcommands and sub_code == 0:
                argv, text = words, sub_text
            elif "Commands:" in text and words[1] not in subcommands:
                wrong.append(f"{doc}: `{line}`: `flowgate {' '.join(words)}` is not a command")
                continue
        for option in options:
            if option not in text:
                wrong.append(f"{doc}: `{line}`: `flowgate {' '.join(argv)}` has no option {option}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_link_to_existing_files(doc):
    text = doc.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        if not (doc.parent / target).exists():
            missing.append(target)
    assert not missing, missing
