"""Attack: read the server's secrets where they were never needed (a render worker's arguments,
a Ray actor's stored arguments, `ps` showing a command line). Workers get the render slice of
the settings, which holds no secret; the key comes from the environment or a file."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from streamer.config import ROOT, Settings, is_secret, load_settings, render_slice, settings_to_json
from streamer.errors import BadInput
from streamer.pool.front.process import ProcessWorker
from streamer.settings_slices import RenderSettings

SECRETS = {
    "key": "server-key-do-not-leak",
    "grant_secret": "grant-secret-do-not-leak",
    "turn_secret": "turn-secret-do-not-leak",
    "metrics_token": "metrics-token-do-not-leak",
}


def _keyed(tmp_path: Path) -> Settings:
    key_file = tmp_path / "key"
    key_file.write_text(SECRETS["key"] + "\n")
    return Settings(key_file=key_file, **SECRETS)


def test_the_render_slice_holds_no_secret_and_all_a_worker_renders_with(tmp_path):
    settings = dataclasses.replace(_keyed(tmp_path), llm_api_key="llm-key-do-not-leak", tts_api_key="tts-do-not")
    text = json.dumps(settings_to_json(render_slice(settings)))
    assert not any(value in text for value in [*SECRETS.values(), "llm-key-do-not-leak", "tts-do-not"])
    assert not any(is_secret(f.name) for f in dataclasses.fields(RenderSettings))
    for f in dataclasses.fields(RenderSettings):
        assert getattr(render_slice(settings), f.name) == getattr(settings, f.name), f.name


@pytest.mark.parametrize("name", ["llm_api_key", "openai_api_key", "asr_key", "webhook_secret", "llm_token"])
def test_secrets_named_by_their_suffix_are_blanked_too(name):
    """Settings added later (an LLM key, say) are secrets by their name, with no list to update."""
    assert is_secret(name)
    assert not any(is_secret(n) for n in ("tts_voice", "max_json_bytes", "keepalive", "turn_ttl_s"))


async def test_a_render_worker_starts_and_renders_on_settings_without_secrets(tmp_path):
    """The blanked settings are all a worker needs (a key-less worker on a public host included)."""
    settings = dataclasses.replace(_keyed(tmp_path), host="0.0.0.0", renderer="lite", cache_dir=tmp_path)
    worker = ProcessWorker(0, "cpu", settings)
    try:
        await worker.start()
        assert worker.alive and worker.renderer == "lite"
    finally:
        await worker.stop()


def test_ray_actors_and_local_workers_are_only_ever_given_the_render_slice():
    """Every `settings_to_json(...)` in the render plane wraps `render_slice(...)` (Ray stores an
    actor's arguments; the process backend is checked live above)."""
    for module in ("streamer/pool/front/process.py", "streamer/pool/front/ray_pool.py"):
        tree = ast.parse((ROOT / module).read_text())
        calls = [
            n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "settings_to_json"
        ]
        assert calls, module
        for call in calls:
            [argument] = call.args
            assert isinstance(argument, ast.Call) and getattr(argument.func, "id", "") == "render_slice", module


def test_the_key_comes_from_a_file(tmp_path):
    key_file = tmp_path / "streamer.key"
    key_file.write_text("from-a-file\n")
    settings = load_settings(cli={"key_file": str(key_file), "host": "0.0.0.0"}, environ={})
    assert settings.key == "from-a-file"
    from_env = load_settings(environ={"STREAMER_KEY_FILE": str(key_file)})
    assert from_env.key == "from-a-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(BadInput, match="empty"):
        load_settings(cli={"key_file": str(tmp_path / "empty")}, environ={})
    with pytest.raises(BadInput, match="cannot read key_file"):
        load_settings(cli={"key_file": str(tmp_path / "missing")}, environ={})


def test_no_document_puts_the_key_on_a_command_line():
    for name in ("README.md", "docs/deploy.md", "docs/scaling.md"):
        for line in (ROOT / name).read_text().splitlines():
            assert "--key " not in line.replace("--key KEY", "").replace("--key-file", ""), f"{name}: {line}"
