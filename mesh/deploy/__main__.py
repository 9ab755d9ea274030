"""`python -m mesh.deploy [--check]`: refresh the generated files of the kustomize base."""

from __future__ import annotations

import sys

from mesh.deploy.sync import DEPLOY_DIR, REPO_ROOT, stale, write


def main(argv: list[str]) -> int:
    if "--check" in argv:
        out_of_date = stale()
        for target in out_of_date:
            print(f"out of date: mesh/deploy/{target} (run `python -m mesh.deploy`)")
        return 1 if out_of_date else 0
    for path in write(DEPLOY_DIR):
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
