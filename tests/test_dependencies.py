"""`make run` installs the package with its `server` extra only: every module the app imports must come with it.

A third-party import that only the test tools pull in (moto brings `cryptography`, say)
works under `make test` and breaks `make run` on a fresh machine.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
APP_PACKAGES = ("dmsupdate", "accounts", "audit", "jobs", "publications", "servers", "operations")


def _closure(distribution: str, extras: set[str]) -> set[str]:
    """The distribution and everything it requires (with these extras) on this Python, recursively."""
    seen: set[str] = set()
    todo = [(canonicalize_name(distribution), extras)]
    while todo:
        name, wanted = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker and not any(marker.evaluate({"extra": e}) for e in wanted or {""}):
                continue
            try:
                metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                continue  # not installed here: its marker holds nowhere on this machine
            todo.append((canonicalize_name(requirement.name), set(requirement.extras)))
    return seen


def _imported_top_levels(folders: tuple[str, ...] = APP_PACKAGES) -> dict[str, str]:
    """Top-level modules imported by the code under `folders` (migrations aside), with one file each."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


def _not_installed(allowed: set[str], folders: tuple[str, ...] = APP_PACKAGES) -> list[str]:
    providers = metadata.packages_distributions()
    missing = []
    for module, where in sorted(_imported_top_levels(folders).items()):
        if module in sys.stdlib_module_names or module in APP_PACKAGES:
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if dists and not dists & allowed:
            missing.append(f"{module} (from {', '.join(sorted(dists))}, imported in {where})")
    return missing


def test_every_third_party_import_of_the_app_comes_with_the_server_extra():
    missing = _not_installed(_closure("dmsupdate", {"server"}))
    assert not missing, "not installed by `pip install .[server]`: " + "; ".join(missing)


def test_the_agent_and_the_state_core_import_only_what_an_agent_install_brings():
    # A data server installs `pip install .` (no extras): everything under dmsupdate/agent and
    # dmsupdate/state must import there (the fleet caller, which needs aiohttp, is the control plane's).
    missing = _not_installed(_closure("dmsupdate", set()), ("dmsupdate/agent", "dmsupdate/state"))
    assert not missing, "not installed by `pip install .`: " + "; ".join(missing)
    assert "aiohttp" not in _closure("dmsupdate", set()) and "django" not in _closure("dmsupdate", set())


def test_the_check_sees_a_module_only_the_test_tools_bring():
    assert "moto" not in _closure("dmsupdate", {"server"})
    assert "moto" in _closure("dmsupdate", {"dev"})
