"""The folders are the layers, and these tests keep them so.

Imports are read from the source with `ast`, every one of them: at the top, inside functions
and under `if TYPE_CHECKING:` (a cycle of type-only imports is still a cycle a reader follows).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import streamer

PACKAGE = Path(streamer.__file__).parent

AIORTC_USERS = ("streamer.webrtc", "streamer.headless")
"""The WebRTC glue (tracks, encoders, link, the peer connection) and the headless client."""

AIOHTTP_USERS = {
    "streamer.server": "the HTTP server",
    "streamer.cli": "runs the server's app and waits for it",
    "streamer.headless.client": "signals to the server over HTTP (sessions, WHEP)",
    "streamer.reply.llm": "streams chat completions from an OpenAI-compatible server",
    "streamer.reply.speech": "fetches TTS from an OpenAI-compatible server",
    "streamer.reply.services": "the one HTTP client session the reply engine shares",
    "streamer.voice.openai_asr": "posts turns to an OpenAI-compatible transcription server",
}

CORE = "streamer.core"
ABOVE_CORE = ("streamer.server", "streamer.webrtc", "streamer.headless", "streamer.reply", "streamer.voice")
"""What the transport-free core must not import: the layers that drive it."""


LAYERS = (
    (
        "streamer",
        "streamer.config",
        "streamer.settings_slices",
        "streamer.errors",
        "streamer.units",
        "streamer.ice",
        "streamer.resources",
    ),
    ("streamer.lifeline", "streamer.memory", "streamer.metrics", "streamer.audio", "streamer.tts"),
    ("streamer.avatar",),
    ("streamer.render",),
    ("streamer.pool", "streamer.pool.base", "streamer.pool.wire", "streamer.pool.channel", "streamer.pool.costs"),
    ("streamer.pool.worker",),
    ("streamer.pool.front",),
    (CORE,),
    ("streamer.video",),
    ("streamer.reply", "streamer.voice"),
    ("streamer.webrtc",),
    ("streamer.server",),
    ("streamer.headless",),
    ("streamer.cli", "streamer.__main__"),
)
"""Bottom first, as README's layout table lists them: a module imports from its own layer or
those before it, never from a later one."""


def layer_of(name: str) -> int:
    """The layer of the longest prefix naming `name` (so `streamer.pool.front.x` is not `streamer`)."""
    best = max((p for layer in LAYERS for p in layer if inside(name, (p,))), key=len)
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports (absolute names; `from pkg import mod` counts as `pkg.mod`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.add(full if full in known else source)
    return found


def graph(tree: dict[str, Path]) -> dict[str, set[str]]:
    known = set(tree)
    return {name: {m for m in imported(name, path, known) if m in known and m != name} for name, path in tree.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def users_of(library: str, tree: dict[str, Path]) -> set[str]:
    known = set(tree)
    return {
        name
        for name, path in tree.items()
        if any(m == library or m.startswith(library + ".") for m in imported(name, path, known))
    }


def inside(name: str, prefixes: tuple[str, ...] | dict[str, str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_cycle_among_streamer_modules() -> None:
    assert cycles(graph(modules())) == []


def test_the_cycle_finder_sees_a_type_only_cycle(tmp_path: Path) -> None:
    for name, body in {
        "a": "from pkg.b import B\n",
        "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
        "c": "def f():\n    from pkg.a import A\n",
    }.items():
        (tmp_path / "pkg").mkdir(exist_ok=True)
        (tmp_path / "pkg" / f"{name}.py").write_text(body)
    tree = {f"pkg.{p.stem}": p for p in (tmp_path / "pkg").glob("*.py")}
    known = set(tree)
    edges = {n: {m for m in imported(n, p, known) if m in known and m != n} for n, p in tree.items()}
    assert cycles(edges) == [["pkg.a", "pkg.b"]]
    assert edges["pkg.c"] == {"pkg.a"}


def test_aiortc_only_in_the_webrtc_glue_and_the_headless_client() -> None:
    assert sorted(n for n in users_of("aiortc", modules()) if not inside(n, AIORTC_USERS)) == []


def test_aiohttp_only_in_the_server_and_the_few_that_speak_http() -> None:
    assert sorted(n for n in users_of("aiohttp", modules()) if not inside(n, AIOHTTP_USERS)) == []


def test_the_package_ships_no_test_code() -> None:
    """Test support lives in tests/support (the wheel has no `tests`); nothing in it reaches there."""
    for library in ("tests", "pytest", "hypothesis"):
        assert sorted(users_of(library, modules())) == [], library


def test_the_core_imports_nothing_from_the_layers_that_drive_it() -> None:
    edges = graph(modules())
    core = {name: out for name, out in edges.items() if inside(name, (CORE,))}
    wrong = {name: sorted(m for m in out if inside(m, ABOVE_CORE)) for name, out in core.items()}
    assert {name: out for name, out in wrong.items() if out} == {}


def test_every_module_has_a_layer() -> None:
    """A new top-level module is placed in LAYERS (and README's table), not left in `streamer`'s."""
    placed = {p for layer in LAYERS for p in layer}
    unplaced = [
        n for n in modules() if n != "streamer" and max((p for p in placed if inside(n, (p,))), key=len) == "streamer"
    ]
    assert unplaced == []


def test_every_module_imports_only_its_own_layer_or_lower_ones() -> None:
    upward = {
        f"{name} -> {m}": (layer_of(name), layer_of(m))
        for name, out in graph(modules()).items()
        for m in out
        if layer_of(m) > layer_of(name)
    }
    assert upward == {}


BLOCKED = """
import importlib, pkgutil, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("aiortc", "aiohttp"):
            raise ImportError(f"{name} is not importable in this test")
        return None

sys.meta_path.insert(0, Refuse())
import streamer.core
names = [m.name for m in pkgutil.walk_packages(streamer.core.__path__, "streamer.core.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


@pytest.mark.parametrize("blocked", ["aiortc", "aiohttp"])
def test_the_finder_does_block(blocked: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", BLOCKED.split("import streamer.core")[0] + f"import {blocked}"],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
    )
    assert run.returncode != 0 and "is not importable in this test" in run.stderr


def test_the_core_imports_with_aiortc_and_aiohttp_unimportable() -> None:
    run = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) >= 9  # conversation, livestream, events, tasks, playout, utterance, ...
