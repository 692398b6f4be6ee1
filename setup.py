"""Packaging hook (the rest is pyproject.toml): the wheel carries the chat page, the templates and
the OpenAPI document as streamer/_data/, read through streamer/resources.py, while a checkout
keeps them at its top level (web/, templates/, docs/openapi.yaml)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCES = {"web": "web", "templates": "templates", "openapi.yaml": "docs/openapi.yaml"}
"""As streamer/resources.py has it (setup.py cannot import the package it builds)."""
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.py")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the checkout
        target = Path(self.build_lib) / "streamer" / "_data"
        for name, source in SOURCES.items():
            here, there = Path(source), target / name
            if here.is_dir():
                shutil.copytree(here, there, ignore=SKIP, dirs_exist_ok=True)
            else:
                there.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(here, there)


setup(cmdclass={"build_py": BuildWithData})
