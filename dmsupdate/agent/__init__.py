"""The data-server agent `dms-update` (no Django here)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _installed


def version() -> str:
    """The installed dmsupdate version (`dms-update --version`, status.json `agentVersion`)."""
    try:
        return _installed("dmsupdate")
    except PackageNotFoundError:
        return "unknown"
