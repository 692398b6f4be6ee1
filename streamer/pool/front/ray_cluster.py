"""Joining a Ray cluster, naming its render actors, and removing them (`run.py actors --stop`).

Token authentication (Ray ≥ 2.60 turns it on for a head started while `~/.ray/auth_token`
exists): Ray itself only looks for the token when it finds the cluster on its own
(`auto`); a front given an address would join without it and be refused. So a front that
finds a token where Ray keeps it (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH`, `~/.ray/auth_token`)
and no `RAY_AUTH_MODE` joins in token mode. A join that cannot succeed fails at once with
the reason, instead of Ray's minutes of silent retries.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from streamer.config import Settings
from streamer.errors import NotReady

log = logging.getLogger(__name__)

ACTOR_PREFIX = "render-"
CONNECT_CHECK_S = 5.0
"""How long the head's port may take to accept a connection before the join is given up."""


def ray_module() -> Any:
    """The ray module, imported on first use (it is optional)."""
    try:
        import ray
    except ImportError:
        raise NotReady("pool = \"ray\" needs the ray package: pip install 'streamer[ray]'") from None
    return ray


def actor_name(device: str) -> str:
    """The stable name of a device's render actor: every front finds the same one."""
    return ACTOR_PREFIX + device.replace(":", "-")


def token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).is_file() if path else (Path.home() / ".ray" / "auth_token").is_file()


def _enable_token_auth() -> None:
    """Token mode for this process, as Ray sets it for `auto` (its config is cached: the
    environment variable alone comes too late once ray is imported)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _check_reachable(address: str) -> None:
    """Fail at once when nothing listens at `host:port` (Ray would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if address.startswith("ray://") or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), CONNECT_CHECK_S).close()
    except OSError as exc:
        raise NotReady(f"no Ray head answers at {address}: {exc}") from None


def connect(settings: Settings) -> Any:
    """Join the cluster `ray_address` names (once per process); returns the ray module."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the cluster
    address = settings.ray_address
    if address not in ("", "auto", "local"):
        _check_reachable(address)
        if "RAY_AUTH_MODE" not in os.environ and token_available():
            _enable_token_auth()
    try:
        ray.init(address=address or None, namespace=settings.ray_namespace, include_dashboard=False)
    except Exception as exc:  # noqa: BLE001 - Ray raises several kinds; each ends the start-up
        raise NotReady(f"could not join the Ray cluster at {address or 'a new local instance'}: {exc}") from None
    log.info("joined the Ray cluster at %s (namespace %s)", address, settings.ray_namespace)
    return ray


def stop_actors(settings: Settings) -> list[str]:
    """Kill the render actors of `ray_namespace` (every front's); returns their names."""
    ray = connect(settings)
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == settings.ray_namespace and a["name"].startswith(ACTOR_PREFIX)
    ]
    for name in names:
        ray.kill(ray.get_actor(name, namespace=settings.ray_namespace), no_restart=True)
        log.info("render actor %s stopped", name)
    return names
