"""`python -m dashboards [OUT_DIR]`: regenerate dashboards/build/ (or OUT_DIR)."""

import sys
from pathlib import Path

from dashboards.build import BUILD_DIR, write

for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else BUILD_DIR):
    print(path)
