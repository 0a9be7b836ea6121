"""``python -m fotawatch`` is the ``fotawatch`` command."""

import sys

from fotawatch.cli import main

sys.exit(main())
