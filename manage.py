#!/usr/bin/env python
"""Django's command-line utility for the dmsupdate control plane."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dmsupdate.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A configuration mistake (e.g. a missing secret in production): one line, not a traceback.
        sys.exit(f"{os.path.basename(sys.argv[0])}: configuration error: {exc}")


if __name__ == "__main__":
    main()
