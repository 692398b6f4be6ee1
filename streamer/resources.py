"""Where the shipped files are: the chat page (web/), the templates and the OpenAPI document.

An installed package carries them in `streamer/_data/` (setup.py copies them there when it
builds the wheel); a checkout, or an editable install of one, reads them where they are kept, at
the top of the checkout. The template cache goes beside the checkout's templates, or, when
installed, in the user's cache folder (`$XDG_CACHE_HOME/streamer`, else `~/.cache/streamer`).
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
SOURCES = {"web": "web", "templates": "templates", "openapi.yaml": "docs/openapi.yaml"}
"""Each shipped name and where a checkout keeps it (setup.py reads this too)."""


def path(name: str) -> Path:
    """The shipped file or folder `name` (a key of SOURCES)."""
    packaged = Path(str(resources.files("streamer") / "_data" / name))
    return packaged if packaged.exists() else CHECKOUT / SOURCES[name]


def in_checkout() -> bool:
    """Whether this package runs from a source checkout (or an editable install of one)."""
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "streamer" / "__init__.py").is_file()


def cache_dir() -> Path:
    if in_checkout():
        return CHECKOUT / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamer"


def install_command(extra: str) -> str:
    """The pip command that adds `extra` to this installation."""
    if in_checkout():
        return f"{sys.executable} -m pip install -e '{CHECKOUT}[{extra}]'"
    return f"{sys.executable} -m pip install 'streamer[{extra}]'"


TEMPLATES = path("templates")
WEB = path("web")
OPENAPI = path("openapi.yaml")
CACHE = cache_dir()
"""The defaults of `Settings` (templates_dir, web_dir, cache_dir) and the served contract."""
