"""The web process and the lite renderer import none of MuseTalk's stack (torch and the rest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamer import resources
from streamer.render.registry import MUSETALK_MODULES

ROOT = Path(__file__).resolve().parents[2]
BLOCK = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {MUSETALK_MODULES!r}:
            raise ModuleNotFoundError(f"{{name}} is blocked by the test", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_the_server_and_lite_need_no_musetalk_stack() -> None:
    done = _python(
        "from streamer.config import Settings\n"
        "from streamer.server.app import create_app\n"
        "from streamer.render.registry import create_renderer, renderer_name\n"
        "settings = Settings(models='/nonexistent')\n"
        "create_app(settings)\n"
        "assert renderer_name(settings) == 'lite'\n"
        "create_renderer(settings)\n"
        f"print(sorted(m for m in sys.modules if m.partition('.')[0] in {MUSETALK_MODULES!r}))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_musetalk_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    done = _python(
        "from streamer.cli import main\n"
        "sys.exit(main(['serve', '--renderer', 'musetalk', '--models', str(sys.argv[1]), '--port', '1']))\n",
        str(tmp_path),
    )
    assert done.returncode == 2, done.stderr
    assert "needs torch" in done.stderr
    assert resources.install_command("musetalk") in done.stderr
