"""The production-shaped stack: docker-compose.yml, the Caddyfile, .env.example, the
Dockerfile and its lock. No Docker engine here, so nothing is run in containers; the
stack file is loaded by Docker Compose v2 itself (`config` needs no engine; `make
compose` installs it, .ci/run too) and the Caddyfile by Caddy's own adapter (Debian's
caddy). A missing tool is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import SecretStr

from settings import ROOT, Settings
from web.body_limits import FORM_MAX_BODY, LIMITS
from workers.cli import main

APP_SERVICES = {"migrate", "web", "worker", "beat", "flower"}
# Read by Compose, Caddy or Flower rather than by settings.py.
STACK_VARIABLES = {"DOMAIN", "POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH"}
# The stack's own knobs with a default in docker-compose.yml (not settings of the app).
STACK_OPTIONS = {"WEB_PROCESSES"}
# What the sample .env gives the REQUIRED block of .env.example.
SAMPLE = {
    "DOMAIN": "drip.example.org",
    "POSTGRES_PASSWORD": "pg-secret-in-sample",
    "FLOWER_BASIC_AUTH": "ops:flower-secret",
    "SECRET_KEY": "sample-secret-key-that-is-long-enough-0123456789",
    "PUBLIC_BASE_URL": "https://drip.example.org",
    "POSTAL_ADDRESS": "Lunara Care, 1 Sample Road, Springfield",
    "EMAIL_FROM": "care@lunara-sample.org",
    "CARE_TEAM_PHONE": "+12025550143",
    "PRIVACY_URL": "https://lunara-sample.org/privacy",
    "TERMS_URL": "https://lunara-sample.org/terms",
    "SENDGRID_API_KEY": "SG.sample",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "sample-key",
    "TWILIO_ACCOUNT_SID": "ACsample",
    "TWILIO_AUTH_TOKEN": "sample-token",
    "TWILIO_MESSAGING_SERVICE_SID": "MGsample",
}
ENV_LINE = re.compile(r"^(#\s)?([A-Z][A-Z0-9_]*)=(.*)$")


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


# ------------------------------------------------------------------ the stack file itself


def test_stack_has_every_part_and_two_schedulers():
    services = compose()["services"]
    assert {"postgres", "redis", "caddy", *APP_SERVICES} == set(services)
    # Two schedulers: the leader lease lets one lead while the other waits.
    assert services["beat"]["deploy"]["replicas"] == 2
    flower = services["flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]  # never published to the world
    assert not any("auth" in part for part in flower["command"])  # no password in `ps`
    assert "FLOWER_BASIC_AUTH" in flower["environment"]


def test_every_drip_command_in_the_stack_exists():
    runner = CliRunner()
    checked = 0
    for name, service in compose()["services"].items():
        # Commands and healthchecks alike: a healthcheck naming a command that does not
        # exist would mark a healthy container unhealthy forever.
        check = (service.get("healthcheck") or {}).get("test") or []
        for command in (service.get("command") or [], check[1:]):
            if command[:1] == ["drip"]:
                result = runner.invoke(main, [*command[1:], "--help"])
                assert result.exit_code == 0, (name, command, result.output)
                checked += 1
    assert checked >= 5  # migrate, web, worker, beat and the two healthchecks at least


def test_one_service_builds_the_image_the_others_run():
    services = compose()["services"]
    builders = [name for name, s in services.items() if "build" in s]
    assert builders == ["migrate"]
    image = services["migrate"]["image"]
    for name in APP_SERVICES:
        assert services[name]["image"] == image, name
        assert name == "migrate" or services[name]["pull_policy"] == "never", name


def test_every_long_running_service_has_a_healthcheck():
    services = compose()["services"]
    for name, service in services.items():
        if name == "migrate":  # a one-shot job
            assert service["healthcheck"] == {"disable": True}
            continue
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "drip", "health", "worker"]
    assert services["beat"]["healthcheck"]["test"] == ["CMD", "drip", "health", "beat"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])


def test_only_the_proxy_faces_the_world():
    services = compose()["services"]
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {
        "caddy": ["80:80", "443:443", "443:443/udp"],
        "flower": ["127.0.0.1:5555:5555"],
    }
    assert services["caddy"]["depends_on"]["web"]["condition"] == "service_healthy"


def test_caddy_is_pinned_to_a_version_that_answers_an_oversized_body_with_413():
    # Before 2.7.0 a body over `request_body`'s cap got 502 (caddyserver/caddy#5652).
    image = compose()["services"]["caddy"]["image"]
    name, _, tag = image.partition(":")
    assert name == "caddy" and re.fullmatch(r"2\.\d+(\.\d+)?", tag), image
    assert tuple(int(n) for n in tag.split(".")[:2]) >= (2, 7), image


# ------------------------------------------------------------------ .env.example


def env_example() -> dict[str, tuple[bool, str]]:
    """NAME -> (set, value) for every NAME=value line, set or commented out."""
    entries: dict[str, tuple[bool, str]] = {}
    lines = (ROOT / ".env.example").read_text().splitlines()
    for number, line in enumerate(lines):
        match = ENV_LINE.match(line)
        if not match:
            continue
        name = match[2]
        assert name not in entries, f"{name} listed twice"
        above = lines[number - 1] if number else ""
        # Its meaning, on the line above.
        assert above.startswith("# ") and not ENV_LINE.match(above), f"{name} has no meaning above"
        entries[name] = (match[1] is None, match[3])
    return entries


def test_env_example_lists_every_setting_and_nothing_else():
    listed = set(env_example())
    settings = {name.upper() for name in Settings.model_fields}
    assert settings - listed == set(), "settings missing from .env.example"
    assert listed - settings - STACK_VARIABLES - STACK_OPTIONS == set(), (
        "unknown names in .env.example"
    )
    stack = (ROOT / "docker-compose.yml").read_text()
    for name in STACK_VARIABLES:
        assert f"${{{name}:?" in stack, f"{name} is not required by docker-compose.yml"
    for name in STACK_OPTIONS:
        assert f"${{{name}:-" in stack, f"{name} is not used by docker-compose.yml"


def _as_env(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    # The image's checkout is /app.
    return str(value).replace(str(ROOT), "/app")


def test_env_example_shows_the_defaults_the_app_uses():
    for name, (is_set, value) in env_example().items():
        field = Settings.model_fields.get(name.lower())
        if field is None or is_set:
            continue  # the stack's own, or a value production must choose
        default = field.default
        if isinstance(default, SecretStr):
            continue
        assert value == _as_env(default), (name, value, default)


def test_env_example_requires_what_production_refuses_without():
    entries = env_example()
    for name in SAMPLE:
        assert entries[name] == (True, ""), f"{name} should be an empty line to fill in"
    assert entries["EMAIL_PROVIDER"] == (True, "sendgrid")
    assert entries["SMS_PROVIDER"] == (True, "twilio")


# ------------------------------------------------------------------ Docker Compose itself


def compose_command() -> list[str]:
    """Docker Compose v2: $COMPOSE, else the one `make compose` puts beside this Python,
    else docker-compose or `docker compose` on PATH."""
    if os.environ.get("COMPOSE"):
        return shlex.split(os.environ["COMPOSE"])
    for command in (
        [str(Path(sys.executable).parent / "docker-compose")],
        ["docker-compose"],
        ["docker", "compose"],
    ):
        exe = shutil.which(command[0])
        if not exe:
            continue
        found = subprocess.run(
            [exe, *command[1:], "version", "--short"], capture_output=True, text=True
        )
        if found.returncode == 0 and found.stdout.strip().lstrip("v").startswith("2."):
            return [exe, *command[1:]]
    pytest.fail("Docker Compose v2 is not installed: run `make compose` (or set COMPOSE)")


def sample_env(**changes: str) -> str:
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = ENV_LINE.match(line)
        if match and match[1] is None and match[2] in SAMPLE:
            line = f"{match[2]}={SAMPLE[match[2]]}"
        lines.append(line)
    lines += [f"{name}={value}" for name, value in changes.items()]
    return "\n".join(lines) + "\n"


def run_compose(project: Path, env_file: str | None, extra_env=None):
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "deploy", project / "deploy")
    if env_file is not None:
        (project / ".env").write_text(env_file)
    # Only what the test gives: nothing of this machine's environment is interpolated.
    env = {"PATH": os.environ["PATH"], "HOME": str(project), **(extra_env or {})}
    return subprocess.run(
        [*compose_command(), "--project-directory", str(project), "config", "--format", "json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_loads_the_stack_with_a_sample_env(tmp_path):
    result = run_compose(tmp_path, sample_env(BRAND_NAME="Sample Brand", TICK_SECONDS="2.5"))
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        # Any setting of .env reaches every app container, not only a listed few...
        assert env["BRAND_NAME"] == "Sample Brand", name
        assert env["TICK_SECONDS"] == "2.5", name
        assert env["POSTAL_ADDRESS"] == SAMPLE["POSTAL_ADDRESS"], name
        # ...and the stack's own values win over .env's.
        assert env["ENVIRONMENT"] == "production", name
        assert env["DATABASE_URL"] == (
            f"postgresql+psycopg://drip:{SAMPLE['POSTGRES_PASSWORD']}@postgres:5432/drip"
        )
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["image"] == "lunara-drip:latest"
    assert [n for n, s in services.items() if "build" in s] == ["migrate"]
    assert "ports" not in services["web"]
    assert services["web"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"
    assert services["beat"]["deploy"]["replicas"] == 2
    assert services["caddy"]["environment"]["DOMAIN"] == SAMPLE["DOMAIN"]
    published = sorted((p["published"], p["target"]) for p in services["caddy"]["ports"])
    assert published == [("443", 443), ("443", 443), ("80", 80)]
    flower = services["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == SAMPLE["FLOWER_BASIC_AUTH"]
    assert [(p["host_ip"], p["published"]) for p in flower["ports"]] == [("127.0.0.1", "5555")]


@pytest.mark.parametrize("name", ["SECRET_KEY", "DOMAIN", "POSTGRES_PASSWORD", "CARE_TEAM_PHONE"])
def test_compose_refuses_a_missing_required_value(tmp_path, name):
    result = run_compose(tmp_path, sample_env(**{name: ""}))
    assert result.returncode != 0
    assert f"set {name}" in result.stderr


def test_compose_needs_the_env_file(tmp_path):
    # Every value given through the environment instead: the missing .env alone fails.
    result = run_compose(tmp_path, None, extra_env=SAMPLE)
    assert result.returncode != 0
    assert ".env" in result.stderr


# ------------------------------------------------------------------ the Caddyfile


def caddy_routes() -> list[dict]:
    caddy = shutil.which("caddy")
    if not caddy:
        pytest.fail("caddy is not installed (apt-get install caddy; .ci/run does)")
    result = subprocess.run(
        [caddy, "adapt", "--adapter", "caddyfile", "--config", "deploy/caddy/Caddyfile"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": str(ROOT / "build"), "DOMAIN": "x.example.org"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    server = json.loads(result.stdout)["apps"]["http"]["servers"]["srv0"]
    assert server["routes"][0]["match"] == [{"host": ["x.example.org"]}]
    return server["routes"][0]["handle"][0]["routes"]


def test_caddy_caps_each_path_as_the_app_does_and_proxies_to_web():
    caps = {}
    for route in caddy_routes():
        if route.get("group") is None:
            continue  # response headers
        (path,) = route["match"][0]["path"] if "match" in route else ("",)
        handlers = route["handle"][0]["routes"][0]["handle"]
        assert [h["handler"] for h in handlers] == ["request_body", "reverse_proxy"], path
        assert handlers[1]["upstreams"] == [{"dial": "web:8000"}]
        caps[path] = handlers[0]["max_size"]
    assert caps == {**{f"{prefix}*": limit for prefix, limit in LIMITS}, "": FORM_MAX_BODY}


# ------------------------------------------------------------------ the image and its lock


def lock_entries() -> dict[str, tuple[str, int, str]]:
    """name -> (version, hash count, the entry's text) of requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", block)
        if head:
            hashes = len(re.findall(r"--hash=sha256:[0-9a-f]{64}", block))
            entries[canonicalize_name(head[1])] = (head[2], hashes, block)
    return entries


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_lock_pins_every_requirement_of_pyproject_with_hashes():
    project = pyproject()
    entries = lock_entries()
    assert entries, "requirements.lock has no pinned requirement"
    for name, (version, hashes, _) in entries.items():
        assert hashes, f"{name}=={version} has no hash"
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for line in wanted:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in entries, f"{req} is not in requirements.lock: run `make lock`"
        version = entries[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {req}: run `make lock`"
        )


def test_lock_holds_no_direct_requirement_pyproject_dropped():
    names = {canonicalize_name(Requirement(r).name) for r in pyproject()["project"]["dependencies"]}
    for name, (_, _, block) in lock_entries().items():
        if "lunara-drip (pyproject.toml)" in block:
            assert name in names, f"{name} is no longer in pyproject.toml: run `make lock`"


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_dockerfile_installs_the_lock_before_the_source():
    lines = dockerfile()
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(stages) == 2, "a builder stage and a slim final stage"
    builder, final = lines[: stages[1]], lines[stages[1] :]
    install = builder.index("RUN pip install --require-hashes --no-deps -r requirements.lock")
    first_source = next(i for i, line in enumerate(builder) if line.startswith("COPY campaigns"))
    assert builder.index("COPY requirements.lock ./") < install < first_source
    project = next(line for line in builder if " --no-deps --no-build-isolation ." in line)
    assert " -e " not in project
    assert final[0] == "FROM python:3.11-slim"
    assert any(
        line.startswith("RUN ") and "useradd" in line and "--uid 10001" in line for line in final
    )
    user = next(i for i, line in enumerate(final) if line.startswith("USER "))
    assert final[user] == "USER 10001"
    assert any(line.startswith("RUN drip campaigns lint --strict --quiet") for line in final)
    health = next(line for line in final if line.startswith("HEALTHCHECK "))
    assert "http://127.0.0.1:8000/healthz" in health


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if not hadolint:
        pytest.fail("hadolint is not installed (a test dependency: make install)")
    result = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", "var", "build", ".git", "tests"} <= ignored
