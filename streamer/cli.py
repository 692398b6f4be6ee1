"""The command line: `streamer [serve|prepare|render|client|grant|check-models|actors]` (also `python run.py …` in a
checkout, and `python -m streamer …`); see `streamer <command> --help`.

A command is a function taking the parsed arguments, and `add_commands` names each with its
options; a new command adds one function and one block there."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from streamer.config import Settings, load_settings
from streamer.errors import StreamerError


def _settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file of settings (see docs/)")
    parser.add_argument("--renderer", choices=["auto", "lite", "musetalk", "sim"])
    parser.add_argument("--models", type=Path, help="folder with the official MuseTalk weights layout")
    parser.add_argument("--devices", help="cuda:0,cuda:1 or cpu:N (default: every GPU, else one CPU worker)")
    parser.add_argument("--pool", choices=["local", "ray"], help="render workers here, or actors of a Ray cluster")
    parser.add_argument("--ray-address", dest="ray_address", help="the Ray cluster to join (default auto)")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    names = (
        *("renderer", "models", "devices", "host", "port", "key", "key_file", "cors_origins", "pool", "ray_address"),
        *("drain_s", "llm_url", "llm_model", "tts", "tts_voice", "asr", "asr_url", "asr_language"),
    )
    cli = {k: getattr(args, k, None) for k in names}
    return load_settings(getattr(args, "config", None), {**cli, **extra})


def serve(args: argparse.Namespace) -> None:
    from streamer.memory import tune_malloc

    tune_malloc(fixed_mmap_threshold=True)
    settings = _settings(args)
    log = logging.getLogger("streamer")
    log.info("serving on http://%s:%d (renderer %s)", settings.host, settings.port, settings.renderer)
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    """Serve until SIGTERM or Ctrl-C, then drain: /readyz says so, speech finishes, exit 0."""
    from aiohttp import web

    from streamer.memory import freeze_startup_objects
    from streamer.server.app import create_app, server_options
    from streamer.server.drain import drain

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **server_options(settings))
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    freeze_startup_objects()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _until_stopped_or_failed(app, stop)
        logging.getLogger("streamer").info("shutting down: draining for up to %.0f s", settings.drain_s)
        await drain(app)
    finally:
        await runner.cleanup()


async def _until_stopped_or_failed(app: Any, stop: asyncio.Event) -> None:
    """Until SIGTERM or Ctrl-C; a start-up that fails ends the process with its reason."""
    from streamer.server.keys import STARTUP

    startup = app[STARTUP]
    waiting = asyncio.ensure_future(stop.wait())
    await asyncio.wait([waiting, startup.task], return_when=asyncio.FIRST_COMPLETED)
    if startup.phase == "failed":
        waiting.cancel()
        raise StreamerError(f"start-up failed: {startup.error}")
    await waiting


def prepare(args: argparse.Namespace) -> None:
    from streamer.avatar.sources import check_id, discover
    from streamer.render.prepare import load_or_prepare
    from streamer.render.registry import create_renderer, devices

    settings = _settings(args)
    sources = discover(settings.templates_dir)
    wanted = [check_id(args.template)] if args.template else sorted(sources)
    for template_id in wanted:
        if template_id not in sources:
            raise StreamerError(f"unknown template {template_id!r} (have: {', '.join(sorted(sources))})")
    renderer = create_renderer(settings, devices(settings)[0])
    for template_id in wanted:
        t = load_or_prepare(
            sources[template_id], renderer, settings.cache_dir, force=args.force, models=settings.models
        )
        why = "face boxes without landmarks" if t.faces == "haar" else "no face parsing"
        label = f" DEGRADED: {why}" if t.degraded else ""
        print(f"{t.id}: {t.frame_count} frames, {renderer.name}, faces {t.faces}{label}")


def render(args: argparse.Namespace) -> None:
    from streamer.video.offline import render_file

    settings = _settings(args)
    figures = render_file(settings, args.template, args.audio, args.out, save_features=args.save_features)
    print(json.dumps(figures, indent=2))


def client(args: argparse.Namespace) -> None:
    from streamer.headless.client import run_client

    figures = asyncio.run(
        run_client(
            args.server,
            args.template,
            speak=args.speak,
            record=args.record,
            seconds=args.seconds,
            key=args.key,
        )
    )
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:>28}: {value}")


def actors(args: argparse.Namespace) -> None:
    from streamer.pool.front.ray_cluster import stop_actors

    print(json.dumps({"stopped": stop_actors(_settings(args))}))


def check_models(args: argparse.Namespace) -> None:
    """Report on a MuseTalk models folder; exit 0 only when MuseTalk will start (doctor.py)."""
    from streamer.render.musetalk.doctor import check_models, format_report, report_json

    report = check_models(args.dir, _settings(args, models=args.dir))
    print(report_json(report) if args.json else format_report(report))
    sys.exit(report.exit_code)


def grant(args: argparse.Namespace) -> None:
    """Mint a single-use grant on a keyed server and print the chat page's address with it."""
    from streamer.headless.client import mint_grant

    key = args.key or _settings(args).key
    if not key:
        raise StreamerError("the server key is needed to mint a grant: --key, STREAMER_KEY or the config file")
    minted = asyncio.run(mint_grant(args.server, key, args.template, args.ttl_s))
    print(f"{args.server.rstrip('/')}/#grant={minted}")


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("serve", help="serve the web page, the API and WebRTC sessions (default)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; anything else needs a key)")
    p.add_argument("--port", type=int, help="port (default 8080)")
    p.add_argument("--key", help="server key (better STREAMER_KEY or --key-file: `ps` shows a command line)")
    p.add_argument("--key-file", dest="key_file", help="a file holding the server key (first line)")
    p.add_argument("--cors", dest="cors_origins", help="origins allowed to call the API, comma-separated")
    p.add_argument("--drain", dest="drain_s", type=float, help="on SIGTERM, seconds speech may take to finish (30)")
    p.add_argument(
        "--llm-url", dest="llm_url", help="OpenAI-compatible base URL ending in /v1: the page's chat answers"
    )
    p.add_argument("--llm-model", dest="llm_model", help="the model the LLM server answers with")
    p.add_argument("--tts", choices=["auto", "espeak", "piper", "openai", "none"], help="speech engine (auto)")
    p.add_argument("--tts-voice", dest="tts_voice", help="espeak-ng voice (en-us, cmn, …) or the OpenAI voice")
    p.add_argument("--asr", choices=["pocketsphinx", "openai", "none"], help="speech recognition of the microphone")
    p.add_argument("--asr-url", dest="asr_url", help="OpenAI-compatible recognizer base URL (…/v1) for --asr openai")
    p.add_argument("--asr-language", dest="asr_language", help="language code for --asr openai, e.g. zh")
    _settings_args(p)
    p.set_defaults(run=serve)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Every command, its options and the function it runs."""
    _add_serve(commands)
    p = commands.add_parser("prepare", help="build the template cache, with progress")
    p.add_argument("--template", help="one template id (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even when the cache is fresh")
    _settings_args(p)
    p.set_defaults(run=prepare)

    p = commands.add_parser("render", help="render one clip offline to an mp4")
    p.add_argument("--template", required=True)
    p.add_argument("--audio", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--save-features", type=Path, help="write the [T, 50, 384] audio features used (.npy)")
    _settings_args(p)
    p.set_defaults(run=render)

    p = commands.add_parser("client", help="headless WebRTC viewer: connect, speak, record, measure")
    p.add_argument("--server", default="http://127.0.0.1:8080")
    p.add_argument("--template", required=True)
    p.add_argument("--speak", type=Path, help="audio file to speak once the welcome clip ends")
    p.add_argument("--record", type=Path, help="write what arrives to this mp4")
    p.add_argument("--seconds", type=float, default=None, help="how long to watch (default: until speech ends)")
    p.add_argument("--key", help="the server key, when it has one")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(run=client)

    p = commands.add_parser("grant", help="print the chat page's address with a fresh grant (keyed servers)")
    p.add_argument("--server", default="http://127.0.0.1:8080")
    p.add_argument("--template", action="append", required=True, help="a template the grant opens (repeatable)")
    p.add_argument("--ttl-s", dest="ttl_s", type=float, default=600, help="seconds it may be used in (at most 3600)")
    p.add_argument("--key", help="the server key (default: from the settings)")
    p.add_argument("--config", type=Path, help="TOML file of settings (see docs/)")
    p.set_defaults(run=grant)

    p = commands.add_parser("check-models", aliases=["doctor"], help="check a MuseTalk models folder")
    p.add_argument("dir", type=Path, help="the models folder (official layout)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--config", type=Path, help="TOML file of settings (musetalk_faces, musetalk_mask)")
    p.set_defaults(run=check_models)

    p = commands.add_parser("actors", help="the shared render actors of a Ray cluster (pool = ray)")
    p.add_argument("--stop", action="store_true", required=True, help="remove them (every front's)")
    _settings_args(p)
    p.set_defaults(run=actors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A real-time talking digital human over WebRTC.")
    add_commands(parser.add_subparsers(dest="command"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["serve", *(argv or [])])
    logging.basicConfig(
        level=os.environ.get("STREAMER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.run(args)
    except StreamerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
