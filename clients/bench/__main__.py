"""`python -m clients.bench ...` works without the server's dependencies installed."""

import sys

from clients.bench.cli import main

sys.exit(main())
