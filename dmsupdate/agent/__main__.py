"""`python -m dmsupdate.agent` runs the `dms-update` command line."""

import sys

from dmsupdate.agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
