"""The `post_update` hook (DESIGN §5, seed 003's onUpdate callbacks).

An executable `bindir/post_update` runs after every successful `update` or
`rebuild`, with the new status.json on its standard input: clear a cache, warm a
query, notify someone. Its failure (an exit code other than 0, a crash, a hang past
the timeout) is reported in status.json as `hookError`; it never undoes or fails
the update.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from dmsupdate.agent.config import Config

log = logging.getLogger("dmsupdate.agent")
POST_UPDATE = "post_update"
POST_UPDATE_TIMEOUT = 300.0


def run_post_update(
    config: Config, status: dict[str, Any], timeout: float = POST_UPDATE_TIMEOUT
) -> str | None:
    """Run the hook if there is one; return why it failed (None: it succeeded, or there is none)."""
    hook = Path(config.bindir) / POST_UPDATE
    if not hook.is_file():
        return None
    if not os.access(hook, os.X_OK):
        return f"{hook} is not executable"
    body = json.dumps({k: v for k, v in status.items() if k != "hookError"}).encode()
    try:
        done = subprocess.run(
            [str(hook)], input=body, capture_output=True, timeout=timeout, cwd=config.log_area, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{POST_UPDATE} did not finish within {timeout:g} s"
    except OSError as exc:
        return f"{POST_UPDATE} failed to run: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-300:]
        return f"{POST_UPDATE} exited with {done.returncode}" + (f": {tail}" if tail else "")
    log.info("%s ran", POST_UPDATE)
    return None
