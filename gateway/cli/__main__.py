"""`python -m gateway.cli` runs the `kefu` command."""

import sys

from gateway.cli import main

sys.exit(main())
