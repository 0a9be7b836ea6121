"""``python -m fotawatch.simulator``: see ``fotawatch.simulator.cli``."""

from fotawatch.simulator.cli import main

raise SystemExit(main())
