"""`python -m ernie2` runs the command line."""

import sys

from ernie2.cli import main

sys.exit(main())
