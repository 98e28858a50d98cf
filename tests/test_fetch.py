"""Fetch stage against real aiohttp servers on 127.0.0.1 (no mocks of the client or the guard).

SSRF tests run with ``allow_private_addresses = false``. Where a test needs a hop that the guard
must treat as public, it uses ``AddressPolicy.exempt_endpoints`` to exempt exactly one local
server (ip, port); every other address, including other ports on 127.0.0.1, stays refused.
Host names are mapped to 127.0.0.1 by `StaticResolver`, a stand-in for DNS that sits *under* the
guard, so the guard sees and checks the addresses the connector will really connect to.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from hashlib import sha256
from ipaddress import ip_address
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from bot.config import FetchConfig
from bot.fetch import (
    ACCEPT,
    AddressPolicy,
    Fetcher,
    FetchError,
    address_block_reason,
    parse_max_age,
    parse_retry_after,
    redact_url,
)

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>'
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Local:
    """A running local server plus a log of the requests it received."""

    server: TestServer
    requests: list[web.Request] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return str(self.server.make_url(path))

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[str, Handler]], Awaitable[Local]]]:
    """Start a local server with the given routes; all are stopped after the test."""
    started: list[TestServer] = []

    async def start(routes: dict[str, Handler]) -> Local:
        app = web.Application()
        local = Local(server=None)  # type: ignore[arg-type]

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            local.requests.append(request)
            return await handler(request)

        app.middlewares.append(record)
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        local.server = server
        started.append(server)
        return local

    yield start
    for server in started:
        await server.close()


def cfg(**overrides: Any) -> FetchConfig:
    """Test config: private addresses allowed unless a test says otherwise, short timeouts."""
    base: dict[str, Any] = {"allow_private_addresses": True, "timeout": 5, "connect_timeout": 2}
    base.update(overrides)
    return FetchConfig(**base)


def exempt(local: Local) -> AddressPolicy:
    """Guard on, with only this one local server standing in for a public host."""
    return AddressPolicy(allow_private=False, exempt_endpoints=frozenset({("127.0.0.1", local.port)}))


class StaticResolver(AbstractResolver):
    """DNS stand-in: fixed name -> addresses table; unknown names fail like NXDOMAIN."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=addr,
                port=port,
                family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for addr in self.table[host]
        ]

    async def close(self) -> None:
        pass


def feed_handler(body: bytes = FEED, **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers, content_type="application/rss+xml")

    return handler


def redirect_to(target: str, status: int = 302) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": target})

    return handler


# ---------------------------------------------------------------------------------------- basics


async def test_plain_get_returns_body_hash_and_validators(serve):
    local = await serve({"/feed": feed_handler(ETag='"v1"', **{"Cache-Control": "public, max-age=600"})})
    async with Fetcher(cfg(user_agent="TagwireTest/1")) as f:
        r = await f.fetch(local.url("/feed"))
    assert r.status == "ok" and r.http_status == 200
    assert r.body == FEED
    assert r.body_hash == sha256(FEED).hexdigest()
    assert r.etag == '"v1"'
    assert r.max_age == 600
    assert r.content_type is not None and r.content_type.startswith("application/rss+xml")
    assert r.url == local.url("/feed")
    sent = local.requests[0].headers
    assert sent["User-Agent"] == "TagwireTest/1"
    assert sent["Accept"] == ACCEPT
    assert "gzip" in sent["Accept-Encoding"]


async def test_etag_round_trip_gives_not_modified_on_second_poll(serve):
    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=FEED, headers={"ETag": '"v1"'})

    local = await serve({"/feed": handler})
    async with Fetcher(cfg()) as f:
        first = await f.fetch(local.url("/feed"))
        second = await f.fetch(local.url("/feed"), etag=first.etag, previous_hash=first.body_hash)
    assert first.status == "ok"
    assert second.status == "not_modified"
    assert second.http_status == 304
    assert second.body is None
    assert second.body_hash == first.body_hash
    assert second.etag == '"v1"'


async def test_last_modified_is_sent_as_if_modified_since(serve):
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("If-Modified-Since") == stamp:
            return web.Response(status=304)
        return web.Response(body=FEED, headers={"Last-Modified": stamp})

    local = await serve({"/feed": handler})
    async with Fetcher(cfg()) as f:
        first = await f.fetch(local.url("/feed"))
        second = await f.fetch(local.url("/feed"), last_modified=first.last_modified)
    assert first.status == "ok" and first.last_modified == stamp
    assert second.status == "not_modified"
    assert second.last_modified == stamp  # kept for the next poll even though the 304 omitted it


async def test_same_body_without_validators_is_unchanged(serve):
    local = await serve({"/feed": feed_handler()})
    async with Fetcher(cfg()) as f:
        first = await f.fetch(local.url("/feed"))
        second = await f.fetch(local.url("/feed"), previous_hash=first.body_hash)
        changed = await f.fetch(local.url("/feed"), previous_hash=sha256(b"older body").hexdigest())
    assert second.status == "unchanged"
    assert second.body is None
    assert second.body_hash == first.body_hash
    assert changed.status == "ok" and changed.body == FEED


async def test_gzip_body_is_decompressed_and_hashed_decoded(serve):
    local = await serve({"/feed": feed_handler(gzip.compress(FEED), **{"Content-Encoding": "gzip"})})
    async with Fetcher(cfg()) as f:
        r = await f.fetch(local.url("/feed"))
    assert r.body == FEED
    assert r.body_hash == sha256(FEED).hexdigest()


# ------------------------------------------------------------------------------------ size cap


async def test_declared_content_length_over_cap_is_refused(serve):
    local = await serve({"/big": feed_handler(b"x" * 5000)})
    async with Fetcher(cfg(max_bytes=4096)) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/big"))
    assert e.value.kind == "too_large"
    assert "4096" in str(e.value)


async def test_body_at_the_cap_is_accepted(serve):
    local = await serve({"/exact": feed_handler(b"x" * 4096)})
    async with Fetcher(cfg(max_bytes=4096)) as f:
        r = await f.fetch(local.url("/exact"))
    assert r.body is not None and len(r.body) == 4096


async def test_chunked_body_without_length_is_cut_off_at_cap(serve):
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse()
        await resp.prepare(request)  # no Content-Length: chunked
        try:
            for _ in range(1000):  # would be 64 MB
                await resp.write(b"y" * 65536)
                sent += 65536
        except (ConnectionError, RuntimeError):
            pass
        return resp

    local = await serve({"/stream": endless})
    async with Fetcher(cfg(max_bytes=256 * 1024)) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/stream"))
    assert e.value.kind == "too_large"
    assert sent < 64 * 1024 * 1024  # the client hung up instead of draining the stream


async def test_gzip_bomb_is_capped_on_decompressed_size(serve):
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024), compresslevel=1)  # ~90 KB on the wire
    assert len(bomb) < 100 * 1024
    local = await serve({"/bomb": feed_handler(bomb, **{"Content-Encoding": "gzip"})})
    async with Fetcher(cfg(max_bytes=1024 * 1024)) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/bomb"))
    assert e.value.kind == "too_large"


# ----------------------------------------------------------------------------------- redirects


async def test_redirect_chain_is_followed_to_final_url(serve):
    async def absolute_to_c(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": str(request.url.with_path("/c"))})

    local = await serve({"/a": redirect_to("/b", 301), "/b": absolute_to_c, "/c": feed_handler()})
    async with Fetcher(cfg(max_redirects=2)) as f:
        r = await f.fetch(local.url("/a"))
    assert r.status == "ok" and r.body == FEED
    assert r.url == local.url("/c")
    assert [req.path for req in local.requests] == ["/a", "/b", "/c"]


async def test_relative_location_is_resolved_against_current_url(serve):
    local = await serve({"/feeds/old": redirect_to("../new/feed.xml?x=1"), "/new/feed.xml": feed_handler()})
    async with Fetcher(cfg()) as f:
        r = await f.fetch(local.url("/feeds/old"))
    assert r.url == local.url("/new/feed.xml?x=1")
    assert r.body == FEED


async def test_too_many_redirects(serve):
    local = await serve({"/loop": redirect_to("/loop")})
    async with Fetcher(cfg(max_redirects=3)) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/loop"))
    assert e.value.kind == "redirects"
    assert len(local.requests) == 4  # the original request plus three redirects followed


async def test_redirect_to_non_http_scheme_is_refused(serve):
    local = await serve({"/r": redirect_to("file:///etc/passwd")})
    async with Fetcher(cfg()) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/r"))
    assert e.value.kind == "invalid_url"


# ---------------------------------------------------------------------------- errors, timeouts


async def test_slow_server_times_out(serve):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(body=FEED)

    local = await serve({"/slow": slow})
    async with Fetcher(cfg(timeout=0.3)) as f:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/slow"))
        elapsed = loop.time() - t0
    assert e.value.kind == "timeout"
    assert elapsed < 1.5


async def test_server_error_carries_status_and_retry_after_seconds(serve):
    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "120"})

    local = await serve({"/busy": busy})
    async with Fetcher(cfg()) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/busy"))
    assert e.value.kind == "http"
    assert e.value.http_status == 503
    assert e.value.retry_after == 120


async def test_500_with_retry_after_http_date(serve):
    when = datetime.now(UTC) + timedelta(minutes=10)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, headers={"Retry-After": format_datetime(when, usegmt=True)})

    local = await serve({"/x": broken})
    async with Fetcher(cfg()) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/x"))
    assert e.value.http_status == 500
    assert e.value.retry_after is not None and 590 <= e.value.retry_after <= 600


async def test_not_found_is_an_http_error_without_retry_after(serve):
    local = await serve({})
    async with Fetcher(cfg()) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/missing"))
    assert (e.value.kind, e.value.http_status, e.value.retry_after) == ("http", 404, None)


async def test_refused_connection_is_a_connection_error():
    with socket.socket() as s:  # find a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Fetcher(cfg()) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(f"http://127.0.0.1:{port}/feed")
    assert e.value.kind == "connection"


async def test_error_messages_never_show_credentials_or_query_tokens(serve):
    local = await serve({})
    url = local.url("/missing?token=SECRET123").replace("http://", "http://user:hunter2@")
    async with Fetcher(cfg()) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(url)
    assert e.value.http_status == 404
    assert "hunter2" not in str(e.value) and "SECRET123" not in str(e.value)
    assert "/missing" in str(e.value)


@pytest.mark.parametrize("url", ["ftp://example.com/feed", "not a url", "http:///nohost"])
async def test_invalid_urls_are_refused(url):
    async with Fetcher(cfg()) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(url)
    assert e.value.kind == "invalid_url"


# ------------------------------------------------------------------------------------ SSRF guard


async def test_loopback_is_refused_without_the_server_seeing_a_request(serve):
    local = await serve({"/feed": feed_handler()})
    async with Fetcher(cfg(allow_private_addresses=False)) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(local.url("/feed"))
    assert e.value.kind == "blocked"
    assert str(e.value) == (
        "blocked: 127.0.0.1 is a loopback address "
        "(set fetch.allow_private_addresses = true only for local testing)"
    )
    assert local.requests == []


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("10.1.2.3", "a private address"),
        ("192.168.0.1", "a private address"),
        ("169.254.169.254", "link-local address (cloud metadata endpoint)"),
        ("100.64.0.1", "CGNAT"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("[::1]", "loopback"),
        ("[fd12::1]", "a private address"),
        ("[fe80::1]", "link-local"),
        ("[::ffff:127.0.0.1]", "127.0.0.1, a loopback address"),
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f.1", "127.0.0.1"),  # hex + short form
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("localhost", "loopback name"),
        ("LOCALHOST.", "loopback name"),
        ("feeds.localhost", "loopback name"),
    ],
)
async def test_literal_and_local_targets_are_refused(serve, host, reason):
    local = await serve({"/feed": feed_handler()})
    resolver = StaticResolver({})  # any DNS lookup would fail: refusals must come first
    async with Fetcher(cfg(allow_private_addresses=False), resolver=resolver) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(f"http://{host}:{local.port}/feed")
    assert e.value.kind == "blocked"
    assert reason in str(e.value)
    assert "allow_private_addresses" in str(e.value)
    assert local.requests == []
    assert resolver.lookups == []


async def test_name_resolving_to_private_address_is_refused_at_connect(serve):
    local = await serve({"/feed": feed_handler()})
    resolver = StaticResolver({"rebind.example.test": ["127.0.0.1"]})
    async with Fetcher(cfg(allow_private_addresses=False), resolver=resolver) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(f"http://rebind.example.test:{local.port}/feed")
    assert e.value.kind == "blocked"
    assert "127.0.0.1 (resolved from rebind.example.test) is a loopback address" in str(e.value)
    assert resolver.lookups == ["rebind.example.test"]
    assert local.requests == []


async def test_name_with_any_private_address_is_refused(serve):
    public = await serve({"/feed": feed_handler()})
    resolver = StaticResolver({"mixed.example.test": ["127.0.0.1", "10.0.0.7"]})
    async with Fetcher(cfg(allow_private_addresses=False), resolver=resolver, policy=exempt(public)) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(f"http://mixed.example.test:{public.port}/feed")
    assert e.value.kind == "blocked" and "10.0.0.7" in str(e.value)
    assert public.requests == []


async def test_public_looking_host_works_under_the_guard(serve):
    """Control for the refusal tests: with the guard on, an allowed endpoint is fetched normally."""
    public = await serve({"/feed": feed_handler()})
    resolver = StaticResolver({"feeds.example.test": ["127.0.0.1"]})
    async with Fetcher(cfg(allow_private_addresses=False), resolver=resolver, policy=exempt(public)) as f:
        r = await f.fetch(f"http://feeds.example.test:{public.port}/feed")
    assert r.status == "ok" and r.body == FEED


@pytest.mark.parametrize("target", ["literal", "name"])
async def test_redirect_from_public_hop_to_private_address_is_refused(serve, target):
    victim = await serve({"/admin": feed_handler(b"internal secrets")})
    private_url = (
        victim.url("/admin") if target == "literal" else f"http://internal.example.test:{victim.port}/admin"
    )
    public = await serve({"/feed": redirect_to(private_url)})
    resolver = StaticResolver({"feeds.example.test": ["127.0.0.1"], "internal.example.test": ["127.0.0.1"]})
    async with Fetcher(cfg(allow_private_addresses=False), resolver=resolver, policy=exempt(public)) as f:
        with pytest.raises(FetchError) as e:
            await f.fetch(f"http://feeds.example.test:{public.port}/feed")
    assert e.value.kind == "blocked"
    assert "127.0.0.1" in str(e.value) and "loopback" in str(e.value)
    assert [r.path for r in public.requests] == ["/feed"]
    assert victim.requests == []


@pytest.mark.parametrize(
    "addr", ["8.8.8.8", "1.1.1.1", "151.101.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e"]
)
def test_public_addresses_pass_the_guard(addr):
    assert address_block_reason(ip_address(addr)) is None


@pytest.mark.parametrize(
    "addr",
    ["127.8.9.10", "172.16.5.4", "100.127.255.254", "198.18.0.1", "240.0.0.1", "255.255.255.255",
     "::", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::", "ff02::1"],
)
def test_non_public_addresses_fail_the_guard(addr):
    assert address_block_reason(ip_address(addr)) is not None


# --------------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize(
    ("limits", "expected_peak"),
    [
        ({"per_host_concurrency": 2, "concurrency": 32}, 2),
        ({"per_host_concurrency": 64, "concurrency": 3}, 3),
    ],
)
async def test_concurrent_requests_respect_connection_limits(serve, limits, expected_peak):
    in_flight = peak = 0

    async def slowish(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.Response(body=FEED)

    local = await serve({"/feed": slowish})
    async with Fetcher(cfg(**limits)) as f:
        results = await asyncio.gather(*(f.fetch(local.url(f"/feed?n={i}")) for i in range(10)))
    assert all(r.status == "ok" for r in results)
    assert peak == expected_peak


# ------------------------------------------------------------------------------ header helpers


def test_retry_after_forms():
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30
    assert parse_retry_after("Wed, 01 May 2024 12:05:00 GMT", now) == 300
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now) == 0  # in the past: retry now
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_max_age_forms():
    assert parse_max_age("public, max-age=900") == 900
    assert parse_max_age('max-age="60", must-revalidate') == 60
    assert parse_max_age("no-cache") is None
    assert parse_max_age("max-age=soon") is None


def test_redact_url_drops_userinfo_and_query_values():
    assert redact_url("https://bob:pw@example.com:8443/feed.xml?key=abc#frag") == (
        "https://example.com:8443/feed.xml?…"
    )
