"""Import boundaries: the design's layering, checked on every run.

- The domain (`campaigns/`) imports no Celery, kombu, FastAPI, Starlette, uvicorn, no
  provider SDK, and nothing of `workers`, `web` or `settings`: tasks and routes call the
  domain, never the other way round. And the layers point down: `web` may import
  `workers` and the domain, `workers` the domain, never upwards; inside the domain its
  parts are layered the same way (care, reporting and intake over tracking and delivery,
  over content, over sequences, over audience). These are import-linter
  contracts in pyproject.toml; the test runs `lint-imports` exactly as a developer or CI does.
- `settings.py` imports nothing of `campaigns`, `workers` or `web`: every process reads it,
  and reading configuration must not load the domain. import-linter analyses packages
  only, so this one is read from settings.py's syntax tree.
- No import cycle between the domain's modules, counting imports inside functions: an
  import moved into a function to dodge a cycle hides the cycle, it does not remove it.
  import-linter's `acyclic_siblings` contract compares whole subpackages, a stricter rule
  than this one; grimp (the graph import-linter is built on) gives the module graph.

Each check runs on the real tree, and once on a copy with a planted violation to show
that it fails and names the offending import.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("campaigns", "workers", "web")

# The console script `lint-imports`, started with this interpreter.
LINT_IMPORTS = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` in `root`: it reads root/pyproject.toml and finds the packages in
    root first (it puts its working directory at the head of sys.path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [*LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_imports_of_project(root: Path) -> list[str]:
    """Every import in root/settings.py, at any depth, of a project package."""
    tree = ast.parse((root / "settings.py").read_text(), "settings.py")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found += [
            f"settings.py:{node.lineno} imports {name}"
            for name in names
            if name.split(".")[0] in PROJECT_PACKAGES
        ]
    return found


def domain_cycles(root: Path) -> list[str]:
    """Import cycles between modules of root/campaigns: for each module not yet named in
    one, the shortest cycle through it, as `a -> b (l.3) -> a (l.9)` with each import's
    line."""
    graph = _domain_graph(root)
    chains, named = [], set()
    for module in sorted(graph.modules):
        if module in named or not (chain := _shortest_cycle(graph, module)):
            continue
        named.update(chain)
        chains.append(
            chain[0]
            + "".join(
                f" -> {b} (l.{graph.get_import_details(importer=a, imported=b)[0]['line_number']})"
                for a, b in zip(chain, chain[1:], strict=False)
            )
        )
    return chains


def _domain_graph(root: Path) -> grimp.ImportGraph:
    # grimp locates a package as importlib does, which answers from sys.modules first:
    # point it at root's copy for the time of the build.
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        patch.delitem(sys.modules, "campaigns", raising=False)
        return grimp.build_graph("campaigns", cache_dir=None)


def _shortest_cycle(graph: grimp.ImportGraph, start: str) -> list[str]:
    """Breadth first from `start` until an import leads back to it; [] if none does."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported == start:
                chain = [module]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [*reversed(chain), start]
            if imported not in previous:
                previous[imported] = module
                queue.append(imported)
    return []


# ------------------------------------------------------------------ the real tree


def test_domain_imports_no_celery_http_workers_web_or_settings():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_settings_imports_nothing_of_the_project():
    assert settings_imports_of_project(ROOT) == []


def test_no_import_cycle_between_domain_modules():
    assert domain_cycles(ROOT) == []


# ------------------------------------------- a copy with planted violations


@pytest.fixture
def copy(tmp_path) -> Path:
    """The packages, settings.py and pyproject.toml, copied: violations are planted here."""
    for package in PROJECT_PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("settings.py", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(
    ("planted", "named"),
    [
        ("from celery import shared_task", "celery"),
        ("import fastapi", "fastapi"),
        ("from workers import tasks", "workers.tasks"),
        ("import web.app", "web.app"),
        ("from settings import get_settings", "settings"),
    ],
)
def test_each_forbidden_import_in_the_domain_is_named(copy, planted, named):
    (copy / "campaigns" / "delivery" / "planted.py").write_text(planted + "\n")
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"campaigns.delivery.planted -> {named} (l.1)" in result.stdout, result.stdout


def test_workers_importing_web_breaks_the_layers(copy):
    (copy / "workers" / "planted.py").write_text("from web.admin import router\n")
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "workers.planted -> web.admin (l.1)" in result.stdout, result.stdout


def test_a_lower_part_of_the_domain_using_a_higher_one_breaks_the_layers(copy):
    (copy / "campaigns" / "audience" / "planted.py").write_text(
        "from campaigns.delivery.work import Work\n"
    )
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "campaigns.audience.planted -> campaigns.delivery.work (l.1)" in result.stdout, (
        result.stdout
    )


def test_a_route_running_sql_breaks_the_contract(copy):
    (copy / "web" / "planted.py").write_text("from sqlalchemy import select\n")
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "web.planted -> sqlalchemy (l.1)" in result.stdout, result.stdout


def test_a_domain_module_importing_celery_or_settings_breaks_the_contract(copy):
    (copy / "campaigns" / "delivery" / "queueing.py").write_text("from celery import shared_task\n")
    (copy / "campaigns" / "reporting" / "configured.py").write_text(
        '"""Planted."""\n\n\ndef settings():\n    from settings import get_settings\n\n'
        "    return get_settings()\n"
    )
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "campaigns.delivery.queueing -> celery (l.1)" in result.stdout, result.stdout
    # An import inside a function counts as much as one at the top.
    assert "campaigns.reporting.configured -> settings (l.5)" in result.stdout, result.stdout


def test_settings_importing_the_domain_is_caught(copy):
    with open(copy / "settings.py", "a") as f:
        f.write(
            "\n\ndef _channels():\n    from campaigns.states import CHANNELS\n\n"
            "    return CHANNELS\n"
        )
    lines = len((copy / "settings.py").read_text().splitlines())
    found = settings_imports_of_project(copy)
    assert found == [f"settings.py:{lines - 2} imports campaigns.states"]


def test_two_domain_modules_importing_each_other_are_a_cycle(copy):
    care = copy / "campaigns" / "care"
    (care / "ping.py").write_text("import campaigns.care.pong\n")
    # The way back is an import inside a function: still a cycle.
    (care / "pong.py").write_text(
        '"""Planted."""\n\n\ndef back():\n    from campaigns.care import ping\n\n    return ping\n'
    )
    cycle = "campaigns.care.ping -> campaigns.care.pong (l.1) -> campaigns.care.ping (l.5)"
    assert cycle in domain_cycles(copy)
