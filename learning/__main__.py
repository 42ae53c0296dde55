"""`python -m learning ...` works without the server's dependencies installed."""

import sys

from learning.cli import main

sys.exit(main())
