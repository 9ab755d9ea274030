"""`python -m alerts`: regenerate alerts/build/ from the SLO catalog (what `make alerts` runs)."""

from __future__ import annotations

import sys

from alerts.rules import BUILD_DIR, write


def main() -> int:
    for path in write(BUILD_DIR):
        print(path.relative_to(BUILD_DIR.parent.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
