"""Run import-linter on trimtab's one namespace spread over several folders.

pyproject.toml (the cockpit) and packaging/agent/pyproject.toml (the agent) map folders into
``trimtab`` with setuptools ``package-dir`` (``trimtab.app`` is ``app/``, ...). grimp,
import-linter's graph builder, only follows a package's own directory, so it cannot see that
layout through the editable install. This script lays the folders out
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
    # The cockpit's pyproject and the agent's (packaging/agent, package-dir relative to it).
    package_dir: dict[str, Path] = {}
    for project in (ROOT, ROOT / "packaging" / "agent"):
        config = tomllib.loads((project / "pyproject.toml").read_text())
        for name, folder in config["tool"]["setuptools"]["package-dir"].items():
            package_dir[name] = (project / folder).resolve()
    with tempfile.TemporaryDirectory(prefix="trimtab-lint-") as tmp:
        top = Path(tmp) / "trimtab"
        top.mkdir()
        # trimtab is a namespace package when installed; grimp wants a regular root package.
        (top / "__init__.py").write_text("")
        for name, folder in package_dir.items():
            (top / name.split(".", 1)[1]).symlink_to(folder)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")]))
        lint = Path(sys.executable).with_name("lint-imports")
        return subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")],
                              env=env, cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
