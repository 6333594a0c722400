"""Run import-linter on trimtab's one namespace spread over several folders.

pyproject maps folders into ``trimtab`` with setuptools ``package-dir`` (``trimtab.app`` is
``app/``, ...). grimp, import-linter's graph builder, only follows a package's own directory,
so it cannot see that layout through the editable install. This script lays the folders out
as one ``trimtab`` package of symlinks in a temporary directory, puts it first on the path and
runs ``lint-imports`` with the contracts in pyproject.toml. The exit status is lint-imports'.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Build the symlinked ``trimtab`` package, run lint-imports on it, return its status."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    with tempfile.TemporaryDirectory(prefix="trimtab-lint-") as tmp:
        top = Path(tmp) / "trimtab"
        top.mkdir()
        (top / "__init__.py").symlink_to(ROOT / package_dir["trimtab"] / "__init__.py")
        for name, folder in package_dir.items():
            if name != "trimtab":
                (top / name.split(".", 1)[1]).symlink_to(ROOT / folder)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")]))
        lint = Path(sys.executable).with_name("lint-imports")
        return subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")],
                              env=env, cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
