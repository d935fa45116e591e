"""The image holds every package the wheel installs: a package left out of the Dockerfile's COPY
lines installs nothing, and every process then fails at its first import."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_installed_package_is_copied_into_the_image() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = {pattern.rstrip("*")
                 for pattern in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    # devtools is for a development machine only: the image leaves it out on purpose.
    assert installed - {"devtools"} <= copied, sorted(installed - {"devtools"} - copied)
