"""``python -m ddeval``: the same as the ``ddeval`` command."""

import sys

from ddeval.entry import main

sys.exit(main())
