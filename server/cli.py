"""The `ponder` command: `ponder serve`, `ponder prepare-model`, `ponder bench`,
`ponder learn` and `ponder fleet`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from server.settings import add_settings_arguments, settings_from


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.auto_policy import load_auto_policy
    from server.rewards import validate_reward_settings

    try:
        settings = settings_from(args)
        validate_reward_settings(settings)  # fail here, before any engine starts
        load_auto_policy(settings)
    except ValueError as error:
        print(f"ponder serve: invalid setting: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # Ponder writes its own JSON line per request (ponder.access)
        # In-flight searches get a few seconds, then are cancelled (engine aborts).
        timeout_graceful_shutdown=5,
    )
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from server.model_prep import default_cache_dir, prepare_embedded_model

    logging.basicConfig(level=logging.INFO)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    print(prepare_embedded_model(cache))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ponder", description="Inference-time search server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    add_settings_arguments(serve)
    prepare = commands.add_parser(
        "prepare-model", help="convert the embedded default model into the cache (once)"
    )
    prepare.add_argument("--cache-dir", default=None, help="cache folder [env PONDER_CACHE]")
    # Listed for `ponder --help`; its arguments are parsed by clients.bench.cli.
    commands.add_parser(
        "bench", help="benchmark accuracy vs compute against a server", add_help=False
    )
    # Listed for `ponder --help`; its arguments are parsed by learning.cli.
    commands.add_parser(
        "learn",
        help="learn from searches: collect and export training data, train a PRM",
        add_help=False,
    )
    # Listed for `ponder --help`; its arguments are parsed by server.fleet.
    commands.add_parser(
        "fleet",
        help="policy replicas behind vLLM's router, and Ponder in front, on this machine",
        add_help=False,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        from clients.bench.cli import main as bench_main

        return bench_main(argv[1:])
    if argv and argv[0] == "learn":
        from learning.cli import main as learn_main

        return learn_main(argv[1:])
    if argv and argv[0] == "fleet":
        from server.fleet import main as fleet_main

        return fleet_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return _prepare(args)


if __name__ == "__main__":
    sys.exit(main())
