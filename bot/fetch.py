"""Fetch stage: one polite, bounded, SSRF-guarded HTTP GET per feed poll.

`Fetcher.fetch` performs a conditional GET (ETag / Last-Modified) over one shared aiohttp session
and returns a `FetchResult` whose ``status`` tells the pipeline what to do next:

* ``"ok"``           new body: parse it;
* ``"not_modified"`` the server answered 304: skip every later stage;
* ``"unchanged"``    200, but the body hashes to ``previous_hash``: skip every later stage.

Anything else raises `FetchError` with a short ``kind`` the scheduler can act on
(``timeout``, ``http``, ``too_large``, ``blocked``, ``redirects``, ``connection``, ``invalid_url``).

SSRF guard. Unless ``fetch.allow_private_addresses`` is true, a fetch may only reach public
addresses. It is enforced at two points, both before any byte is sent:

1. every hop's URL (the first and each redirect target) is checked before the request: names such
   as ``localhost`` and literal IPs, including legacy numeric forms (``2130706433``, ``0x7f.1``,
   ``0177.0.0.1``) read with ``inet_aton`` semantics, as the C resolver would;
2. DNS names are resolved by `GuardedResolver`, installed in the connector: it refuses a name if
   any of its addresses is not public, and otherwise hands the connector exactly the addresses it
   checked. The connector connects to those addresses, so no second lookup can be rebound to a
   private address between check and connect.

Redirects are followed by hand (never by aiohttp), so each hop goes through both checks.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Literal

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from bot.config import FetchConfig

__all__ = [
    "ACCEPT",
    "AddressPolicy",
    "FetchError",
    "FetchErrorKind",
    "FetchResult",
    "FetchStatus",
    "Fetcher",
    "GuardedResolver",
    "address_block_reason",
    "parse_max_age",
    "parse_retry_after",
    "redact_url",
]

ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
ACCEPT_ENCODING = "gzip, deflate"
PRIVATE_HINT = "(set fetch.allow_private_addresses = true only for local testing)"

FetchStatus = Literal["ok", "not_modified", "unchanged"]
FetchErrorKind = Literal["timeout", "http", "too_large", "blocked", "redirects", "connection", "invalid_url"]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_DNS_CACHE_TTL = 60  # seconds; the cache only ever holds addresses the guard accepted

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class FetchResult:
    status: FetchStatus
    url: str  # final URL after redirects
    body: bytes | None  # only for "ok"
    content_type: str | None
    etag: str | None
    last_modified: str | None
    body_hash: str  # sha256 hex of the body; for "not_modified" the previous hash ("" if none given)
    http_status: int
    retry_after: float | None  # seconds, from Retry-After
    max_age: float | None  # seconds, from Cache-Control max-age


class FetchError(Exception):
    """A fetch that produced no usable body. ``str(err)`` is short and safe to log."""

    def __init__(
        self,
        kind: FetchErrorKind,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: FetchErrorKind = kind
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"FetchError(kind={self.kind!r}, message={self.message!r}, http_status={self.http_status!r})"


# --------------------------------------------------------------------------------------------------
# Address policy (SSRF guard)

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_ULA = ipaddress.IPv6Network("fc00::/7")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# A host made only of numbers in C notation (decimal, 0x hex, 0 octal), 1 to 4 dotted parts.
_NUMERIC_HOST = re.compile(r"^(?:0x[0-9a-f]*|\d+)(?:\.(?:0x[0-9a-f]*|\d+)){0,3}\.?$", re.IGNORECASE)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_block_reason(ip: IPAddress) -> str | None:
    """Why the guard refuses ``ip`` (e.g. ``"a loopback address"``), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        v4 = _embedded_ipv4(ip)
        if v4 is not None:
            inner = address_block_reason(v4)
            return None if inner is None else f"an IPv6 form of {v4}, {inner}"
        if ip.scope_id:  # "fe80::1%eth0"
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address" + (" (cloud metadata endpoint)" if ip in _METADATA else "")
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a shared (CGNAT) address"
    if any(ip in net for net in _RFC1918) or (isinstance(ip, ipaddress.IPv6Address) and ip in _ULA):
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private or not ip.is_global:
        return "a special-purpose (non-public) address"
    return None


class _Blocked(OSError):
    """Raised inside the connector by `GuardedResolver`; unwrapped into FetchError(kind="blocked")."""


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which network endpoints a fetch may reach.

    ``allow_private`` turns the guard off (``fetch.allow_private_addresses``). ``exempt_endpoints``
    lists exact ``(ip, port)`` pairs treated as public: it is not reachable from the config file and
    exists so tests can stand a local server in for "the public internet" while every other
    address on the machine stays refused.
    """

    allow_private: bool = False
    exempt_endpoints: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    def check_ip(
        self, ip: IPAddress, port: int, via: str | None = None, how: str = "resolved from"
    ) -> str | None:
        """A refusal message for connecting to ``ip:port``, or None if allowed."""
        if self.allow_private or (ip.compressed, port) in self.exempt_endpoints:
            return None
        reason = address_block_reason(ip)
        if reason is None:
            return None
        origin = f" ({how} {_printable(via)})" if via and via != ip.compressed else ""
        return f"blocked: {ip.compressed}{origin} is {reason} {PRIVATE_HINT}"

    def check_name(self, host: str) -> str | None:
        """A refusal message for a host name that is local by definition, or None."""
        if self.allow_private:
            return None
        name = host.rstrip(".").lower()
        if name in _LOCAL_NAMES or name.endswith(".localhost"):
            return f"blocked: {name} is a loopback name {PRIVATE_HINT}"
        return None


class GuardedResolver(AbstractResolver):
    """Wraps a resolver; refuses a name when any address it resolves to is not allowed.

    The connector connects only to the addresses returned here, i.e. the ones just checked.
    An ``inner`` resolver passed in stays the caller's to close.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._owns_inner = inner is None
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        refusal = self._policy.check_name(host)
        if refusal:
            raise _Blocked(refusal)
        results = await self._inner.resolve(host, port, family)
        for r in results:
            ip = _parse_ip(str(r["host"]))
            if ip is None:
                raise _Blocked(f"blocked: {host} resolved to something that is not an IP address")
            refusal = self._policy.check_ip(ip, int(r["port"]) or port, via=host)
            if refusal:
                raise _Blocked(refusal)
        return results

    async def close(self) -> None:
        if self._owns_inner:
            await self._inner.close()


# --------------------------------------------------------------------------------------------------
# Header helpers


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: ``"120"`` or an HTTP-date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def parse_max_age(cache_control: str | None) -> float | None:
    """``max-age`` from a Cache-Control header, in seconds; None if absent or unreadable."""
    if not cache_control:
        return None
    for directive in cache_control.split(","):
        name, _, arg = directive.strip().partition("=")
        if name.strip().lower() == "max-age":
            arg = arg.strip().strip('"')
            return float(arg) if arg.isdigit() else None
    return None


def redact_url(url: str | URL) -> str:
    """A URL safe for messages and logs: no userinfo, no query values, no fragment."""
    try:
        u = url if isinstance(url, URL) else URL(url)
        host = u.raw_host or ""
    except (ValueError, TypeError):
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    port = f":{u.explicit_port}" if u.explicit_port is not None else ""
    query = "?…" if u.raw_query_string else ""
    return f"{u.scheme}://{host}{port}{u.raw_path}{query}"


def _printable(text: str, limit: int = 60) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


# --------------------------------------------------------------------------------------------------
# Fetcher


_VETTED_URLS = 100_000  # vetted source URLs remembered (the oldest is forgotten first)


class Fetcher:
    """Fetches feeds over one shared aiohttp session. Use as ``async with Fetcher(cfg) as f``.

    ``resolver`` replaces the DNS resolver under the guard (tests map names to 127.0.0.1 with it);
    ``policy`` replaces the address policy derived from ``config.allow_private_addresses``.
    """

    def __init__(
        self,
        config: FetchConfig,
        *,
        resolver: AbstractResolver | None = None,
        policy: AddressPolicy | None = None,
    ) -> None:
        self._config = config
        self._policy = policy if policy is not None else AddressPolicy(config.allow_private_addresses)
        self._inner_resolver = resolver
        self._resolver: GuardedResolver | None = None
        self._session: aiohttp.ClientSession | None = None
        self._vetted: dict[str, URL] = {}  # source URL -> its vetted form (bounded: _VETTED_URLS)

    async def __aenter__(self) -> Fetcher:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, resolver = self._session, self._resolver
        self._session = self._resolver = None
        if session is not None:
            await session.close()
        if resolver is not None:
            await resolver.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            cfg = self._config
            self._resolver = GuardedResolver(self._policy, self._inner_resolver)
            connector = aiohttp.TCPConnector(
                limit=cfg.concurrency,
                limit_per_host=cfg.per_host_concurrency,
                use_dns_cache=True,
                ttl_dns_cache=_DNS_CACHE_TTL,
                resolver=self._resolver,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # the whole fetch (redirects and body included) runs under asyncio.timeout(cfg.timeout)
                # in fetch(); a second total timer per request here would only cost a timer handle
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=cfg.connect_timeout),
                headers={"User-Agent": cfg.user_agent, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING},
                cookie_jar=aiohttp.DummyCookieJar(),  # feeds need no cookies; nothing to grow unbounded
                trust_env=False,  # never route through an environment proxy: the guard checks direct peers
                auto_decompress=True,
            )
        return self._session

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        previous_hash: str | None = None,
    ) -> FetchResult:
        """GET ``url`` (conditionally, if validators are given). Raises `FetchError`."""
        session = self._ensure_session()
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        current = self._check_url(url)
        try:
            async with asyncio.timeout(self._config.timeout):
                for _hop in range(self._config.max_redirects + 1):
                    result = await self._request(
                        session, current, headers, etag, last_modified, previous_hash
                    )
                    if isinstance(result, FetchResult):
                        return result
                    current = result
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError(
                "timeout", f"timed out after {self._config.timeout:g}s fetching {redact_url(current)}"
            ) from None
        except aiohttp.InvalidURL as e:
            raise FetchError(
                "invalid_url", f"invalid URL {redact_url(current)}: {type(e).__name__}"
            ) from None
        except (aiohttp.ClientError, OSError) as e:
            blocked = _find_blocked(e)
            if blocked is not None:
                raise FetchError("blocked", str(blocked)) from None
            raise FetchError("connection", f"{_describe(e)} fetching {redact_url(current)}") from None
        raise FetchError(
            "redirects", f"more than {self._config.max_redirects} redirects starting at {redact_url(url)}"
        )

    async def _request(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        headers: dict[str, str],
        etag: str | None,
        last_modified: str | None,
        previous_hash: str | None,
    ) -> FetchResult | URL:
        """One hop: a FetchResult, or the URL of the next hop for a redirect."""
        async with session.get(url, headers=headers, allow_redirects=False) as resp:
            status = resp.status
            h = resp.headers
            retry_after = parse_retry_after(h.get("Retry-After"))
            if status in _REDIRECT_STATUSES:
                location = h.get("Location")
                if not location:
                    raise FetchError("http", f"HTTP {status} without Location from {redact_url(url)}",
                                     http_status=status)
                try:
                    target = url.join(URL(location.strip()))
                except (ValueError, TypeError):
                    raise FetchError("invalid_url", f"unreadable redirect Location from {redact_url(url)}",
                                     http_status=status) from None
                return self._check_url(target)
            if status == 304:
                return FetchResult(
                    status="not_modified",
                    url=str(url),
                    body=None,
                    content_type=h.get("Content-Type"),
                    etag=h.get("ETag") or etag,
                    last_modified=h.get("Last-Modified") or last_modified,
                    body_hash=previous_hash or "",
                    http_status=status,
                    retry_after=retry_after,
                    max_age=parse_max_age(h.get("Cache-Control")),
                )
            if not 200 <= status < 300:
                reason = _printable(resp.reason or "")
                raise FetchError(
                    "http",
                    f"HTTP {status}{' ' + reason if reason else ''} from {redact_url(url)}",
                    http_status=status,
                    retry_after=retry_after,
                )
            body, digest = await self._read_capped(resp, url)
            unchanged = previous_hash is not None and digest == previous_hash
            return FetchResult(
                status="unchanged" if unchanged else "ok",
                url=str(url),
                body=None if unchanged else body,
                content_type=h.get("Content-Type"),
                etag=h.get("ETag"),
                last_modified=h.get("Last-Modified"),
                body_hash=digest,
                http_status=status,
                retry_after=retry_after,
                max_age=parse_max_age(h.get("Cache-Control")),
            )

    async def _read_capped(self, resp: aiohttp.ClientResponse, url: URL) -> tuple[bytes, str]:
        """Stream the (decompressed) body, hashing as it comes; refuse past ``max_bytes``."""
        cap = self._config.max_bytes
        declared = resp.content_length
        if declared is not None and declared > cap:
            resp.close()
            raise FetchError("too_large", f"response of {declared} bytes exceeds the {cap}-byte cap "
                                          f"from {redact_url(url)}", http_status=resp.status)
        hasher = hashlib.sha256()
        parts: list[bytes] = []
        total = 0
        # aiohttp inflates gzip/deflate in bounded steps, so counting decoded chunks caps memory too.
        async for chunk in resp.content.iter_chunked(_CHUNK):
            total += len(chunk)
            if total > cap:
                resp.close()
                raise FetchError("too_large", f"response body exceeds the {cap}-byte cap "
                                              f"from {redact_url(url)}", http_status=resp.status)
            hasher.update(chunk)
            parts.append(chunk)
        return b"".join(parts), hasher.hexdigest()

    def _check_url(self, url: str | URL) -> URL:
        """`vet_url`, remembered for the URLs polled again and again (a pure function of the URL
        and the policy; only accepted URLs are remembered; resolved addresses are still checked on
        every connection by the guarded resolver)."""
        if not isinstance(url, str):
            return vet_url(url, self._policy)
        vetted = self._vetted.get(url)
        if vetted is None:
            vetted = vet_url(url, self._policy)
            if len(self._vetted) >= _VETTED_URLS:
                del self._vetted[next(iter(self._vetted))]
            self._vetted[url] = vetted
        return vetted


def _walk(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend([e.__cause__, e.__context__, getattr(e, "os_error", None)])


def _find_blocked(exc: BaseException) -> _Blocked | None:
    return next((e for e in _walk(exc) if isinstance(e, _Blocked)), None)


def _describe(exc: BaseException) -> str:
    """A short cause without URLs or headers (aiohttp messages may echo the full URL)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "DNS lookup failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        cause = os.strerror(err.errno) if err.errno else type(err).__name__
        return f"cannot connect ({_printable(cause).lower()})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "malformed or truncated response body"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"bad response ({exc.status})"
    return type(exc).__name__


def vet_url(url: str | URL, policy: AddressPolicy) -> URL:
    """Parse and vet one hop's URL before any request: scheme, host, local names, literal IPs.

    Raises FetchError (kind invalid_url or blocked) with a message fit for the user."""
    try:
        u = url if isinstance(url, URL) else URL(url.strip())
        host = u.raw_host
        port = u.port
    except (ValueError, TypeError):
        raise FetchError("invalid_url", f"not a URL: {redact_url(str(url))}") from None
    if u.scheme not in ("http", "https"):
        raise FetchError("invalid_url", f"only http and https URLs can be fetched, not "
                                        f"{_printable(u.scheme, 16) or 'a relative URL'}")
    if not host or port is None:
        raise FetchError("invalid_url", f"URL has no host: {redact_url(u)}")
    refusal = policy.check_name(host)
    if refusal:
        raise FetchError("blocked", refusal)
    ip = _parse_ip(host)
    if ip is None and _NUMERIC_HOST.match(host):
        # A legacy numeric IPv4 form: read it the way inet_aton (and so getaddrinfo) would.
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            raise FetchError("invalid_url", f"not a valid IPv4 address: {_printable(host)}") from None
        refusal = policy.check_ip(ip, port, via=host, how="written as")
        if refusal:
            raise FetchError("blocked", refusal)
        raise FetchError(
            "invalid_url", f"non-canonical IPv4 address {_printable(host)}; write it as {ip}"
        )
    if ip is not None:
        refusal = policy.check_ip(ip, port)
        if refusal:
            raise FetchError("blocked", refusal)
    return u.with_fragment(None)
