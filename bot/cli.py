"""The ``tagwire`` command line (also ``python -m bot``).

Commands that change subscriptions or sources go through the same core command service that
slash commands use, as a console destination with admin rights (whoever runs the CLI runs the bot).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from bot.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from bot.logs import setup_logging
from bot.models import Command, Destination, Reply

DEFAULT_DESTINATION = "console:#news"


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="PATH",
                   help=f"config file (default: $TAGWIRE_CONFIG or {DEFAULT_CONFIG_PATH})")


def _dest_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--destination", "-d", default=DEFAULT_DESTINATION,
                   help=f"console channel, as platform:channel (default: {DEFAULT_DESTINATION})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagwire",
        description="Topic alerts from news feeds: one alert per story, copies recognised, follow-ups threaded.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the bot")
    _config_arg(p)
    p.add_argument("--once", action="store_true", help="poll every source once, deliver what is pending, exit")

    p = sub.add_parser("check-config", help="validate a config file (exit 0 if valid)")
    _config_arg(p)

    p = sub.add_parser("demo", help="offline demo: local sample feeds publishing over a minute")
    p.add_argument("--speed", type=float, default=1.0, help="run the demo's timeline this many times faster")
    p.add_argument("--jsonl", metavar="PATH", help="also write machine-readable events here")

    p = sub.add_parser("latest", help="newest stories matching a query, from the archive")
    p.add_argument("query")
    p.add_argument("-n", type=int, default=5, help="how many stories (1-20, default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _config_arg(p)

    p = sub.add_parser("subscribe", help="follow a query in a console channel")
    p.add_argument("query")
    _dest_arg(p)
    _config_arg(p)

    p = sub.add_parser("unsubscribe", help="stop following a tag in a console channel")
    p.add_argument("tag")
    _dest_arg(p)
    _config_arg(p)

    p = sub.add_parser("subscriptions", help="list a console channel's tags")
    _dest_arg(p)
    _config_arg(p)

    p = sub.add_parser("sources", help="list, add or remove sources")
    ss = p.add_subparsers(dest="sources_command", required=True, metavar="ACTION")
    q = ss.add_parser("list", help="sources and their health")
    _config_arg(q)
    q = ss.add_parser("add", help="add a feed")
    q.add_argument("url")
    q.add_argument("name", nargs="?", default="")
    _config_arg(q)
    q = ss.add_parser("remove", help="remove a feed by name or URL")
    q.add_argument("which")
    _config_arg(q)

    p = sub.add_parser("why", help="why an article was or was not posted")
    p.add_argument("url")
    _config_arg(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from bot.demo import run_demo

        setup_logging("warning")
        return asyncio.run(run_demo(speed=args.speed, jsonl=args.jsonl))
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"tagwire: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"ok: {len(config.sources)} source(s), {len(config.subscriptions)} subscription(s)")
        return 0
    setup_logging(config.log_level if args.command == "run" else "warning")
    try:
        return asyncio.run(_dispatch(args, config))
    except ConfigError as e:
        print(f"tagwire: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, config: Config) -> int:
    if args.command == "run":
        return await _run(config, once=args.once)
    from bot.app import Core

    core = await Core.open(config, sender=False)
    try:
        if args.command == "latest":
            return await _latest(core, args)
        dest = Destination.parse(getattr(args, "destination", DEFAULT_DESTINATION))
        if args.command == "subscribe":
            cmd = Command("subscribe", args.query, dest, user="cli", is_admin=True)
        elif args.command == "unsubscribe":
            cmd = Command("unsubscribe", args.tag, dest, user="cli", is_admin=True)
        elif args.command == "subscriptions":
            cmd = Command("subscriptions", "", dest, user="cli", is_admin=True)
        elif args.command == "why":
            cmd = Command("why", args.url, dest, user="cli", is_admin=True)
        else:  # sources
            rest = {"list": "list", "add": f"add {getattr(args, 'url', '')} {getattr(args, 'name', '')}",
                    "remove": f"remove {getattr(args, 'which', '')}"}[args.sources_command]
            cmd = Command("sources", rest.strip(), dest, user="cli", is_admin=True)
        reply = await core.commands.handle(cmd)
        print(render_reply(reply))
        return 0 if reply.ok else 1
    finally:
        await core.close()


async def _run(config: Config, *, once: bool) -> int:
    from bot.app import Tagwire

    app = await Tagwire.create(config)
    try:
        if once:
            await app.start_adapters()
            outcomes = await app.run_once()
            failed = [o for o in outcomes if not o.ok]
            for o in failed:
                print(f"tagwire: source {o.source_id} failed: {o.error}", file=sys.stderr)
            return 0
        await app.run()
        return 0
    finally:
        await app.close()


async def _latest(core: object, args: argparse.Namespace) -> int:
    from bot import match
    from bot.app import Core

    assert isinstance(core, Core)
    if not 1 <= args.n <= 20:
        print("tagwire: -n must be between 1 and 20", file=sys.stderr)
        return 2
    try:
        stories = await core.commands.latest(args.query, args.n)
    except match.QueryError as e:
        print(f"tagwire: that query has a problem: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([
            {"story_id": s.story_id, "title": s.title, "url": s.url, "sources": list(s.sources),
             "published": s.published.isoformat() if s.published else None, "summary": s.summary}
            for s in stories
        ], ensure_ascii=False, indent=2))
        return 0
    print(render_reply(Reply(text=f"{len(stories)} stor{'y' if len(stories) == 1 else 'ies'}:",
                             stories=tuple(stories))))
    return 0


def render_reply(reply: Reply) -> str:
    from adapters.console import clean

    out = [clean(reply.text)]
    out.extend(f"  {clean(line)}" for line in reply.lines)
    for s in reply.stories:
        when = s.published.strftime("%Y-%m-%d %H:%M UTC") if s.published else ""
        out.append(f"• {clean(s.title)}")
        out.append(f"  {clean(', '.join(s.sources))} · {when}")
        out.append(f"  {s.url}")
        if s.summary:
            out.append(f"  {clean(s.summary)}")
    return "\n".join(out)
