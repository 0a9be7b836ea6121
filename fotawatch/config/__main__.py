"""``python -m fotawatch.config schema``: print the config file's JSON schema."""

from __future__ import annotations

import json
import sys

from fotawatch.config import json_schema

__all__ = ["main"]

USAGE = "usage: python -m fotawatch.config schema > config/fotawatch.schema.json\n"


def main(argv: list[str]) -> int:
    if argv != ["schema"]:
        sys.stderr.write(USAGE)
        return 2
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
