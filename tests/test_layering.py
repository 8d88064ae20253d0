"""The layering of DESIGN §2: imports point down, no app imports one above it, and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lowest first. An app may import the floor and the apps listed before it, never one after it.
LAYERS = [
    ("dmsupdate.state",),
    ("dmsupdate.agent",),
    ("dmsupdate",),  # the web floor: API error contract, choices, locks, helpers
    ("accounts",),
    ("audit",),
    ("jobs",),
    ("publications",),
    ("servers",),
    ("notifications",),
    ("operations",),
    ("dmsupdate.roof",),  # settings, urls, wsgi, asgi
]
LEVEL = {unit: n for n, units in enumerate(LAYERS) for unit in units}
ROOF = ("urls", "settings", "wsgi", "asgi")
PACKAGES = [
    "dmsupdate",
    "accounts",
    "audit",
    "jobs",
    "publications",
    "servers",
    "notifications",
    "operations",
]
MAX_LINES = 400


def unit_of(module: str) -> str | None:
    """The layer unit a module belongs to (None for third-party and standard modules)."""
    parts = module.split(".")
    if parts[0] == "dmsupdate":
        if len(parts) > 1 and parts[1] in ("state", "agent"):
            return f"dmsupdate.{parts[1]}"
        if len(parts) > 1 and parts[1] in ROOF:
            return "dmsupdate.roof"
        return "dmsupdate"
    return parts[0] if parts[0] in LEVEL else None


def project_files(*folders: str) -> list[Path]:
    return sorted(
        f for folder in folders for f in (ROOT / folder).rglob("*.py") if "migrations" not in f.parts
    )


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in a file (top level or inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def upward_imports(files: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for path in files:
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        own = unit_of(module)
        for line, name in imports_of(path):
            target = unit_of(name)
            if own and target and target != own and LEVEL[target] > LEVEL[own]:
                problems.append(f"{path.relative_to(root)}:{line} ({own}) imports {name} ({target})")
    return problems


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports(project_files(*PACKAGES)) == []


def test_the_check_catches_an_app_importing_upward(tmp_path):
    probe = tmp_path / "publications" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("from jobs.models import Job\n\n\ndef later():\n    from servers import models\n")
    assert upward_imports([probe], root=tmp_path) == [
        "publications/probe.py:5 (publications) imports servers (servers)"
    ]


def test_no_module_is_over_400_lines():
    files = project_files(*PACKAGES, "tests", "bench")
    long = [
        f"{f.relative_to(ROOT)}: {n}"
        for f in files
        if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert long == []
