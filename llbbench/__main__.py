"""`python -m llbbench ...`: the command line, as the `llbbench` script runs it."""

import sys

from .cli import main

sys.exit(main())
