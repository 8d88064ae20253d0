"""The agent and the state core must import without Django (they run on data servers)."""

import subprocess
import sys


def test_state_and_agent_import_without_django():
    code = (
        "import sys, importlib, pkgutil\n"
        "import dmsupdate.state, dmsupdate.agent\n"
        "for pkg in (dmsupdate.state, dmsupdate.agent):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}, cwd="."
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
