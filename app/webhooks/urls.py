"""Webhook targets without server-side request forgery: http(s) URLs without credentials, whose
host resolves only to public addresses. Checked when a webhook is created and again before each
attempt, which then connects to the address vetted (so DNS rebinding between the check and the
connection cannot reach an internal address)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from app.domain.errors import BadUserInput
from app.store.models import URL_MAX

RESOLVE_TIMEOUT_SECONDS = 5.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Cloud metadata services; link-local or unique-local already, named here to be plain about it.
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


@dataclass(frozen=True, slots=True)
class Target:
    url: httpx.URL
    host: str  # ASCII (IDNA), without brackets
    port: int


def parse(url: str) -> Target:
    """The URL's target; BAD_USER_INPUT unless it is an absolute http(s) URL we accept."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise BadUserInput(f"url must be 1 to {URL_MAX} characters.")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise BadUserInput("url must not contain spaces or control characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise BadUserInput("url is not a valid URL.") from None
    if parsed.scheme not in ("http", "https"):
        raise BadUserInput("url must be an http:// or https:// URL.")
    if parsed.userinfo:
        raise BadUserInput("url must not contain credentials.")
    if not parsed.raw_host:
        raise BadUserInput("url needs a host.")
    if parsed.fragment:
        raise BadUserInput("url must not have a #fragment.")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        # Port 0 read as the default, and 99999 as given: deliveries that could never connect.
        raise BadUserInput("url's port must be 1 to 65535.")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return Target(parsed, host, port)


# IETF protocol assignments (RFC 6890): not a receiver's; Python calls most of it global.
IETF_PROTOCOL = ipaddress.ip_network("192.0.0.0/24")


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one maps or tunnels to (6to4, Teredo), if any: Python's
    is_global calls 2002:7f00:1:: global although it leads to 127.0.0.1. (NAT64's 64:ff9b::/96
    and ::a.b.c.d lie in ::/8, which is_reserved refuses anyway.)"""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's: where the packets end up
    return None


def refusal(address: IPAddress) -> str | None:
    """Why a receiver may not be at this address, or None for a public one. An IPv6 address
    that carries an IPv4 one (mapped, 6to4, Teredo) is judged by that one too."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = _carried_ipv4(address)
        if carried is not None:
            problem = refusal(carried)
            if problem is not None or address.ipv4_mapped is not None:
                return problem
    elif address in IETF_PROTOCOL:
        return "a reserved address"
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:  # includes unique-local fc00::/7 and the unspecified address
        return "a private address"
    if address.is_reserved or address.is_unspecified or not address.is_global:
        return "a reserved address"
    return None


async def resolve(target: Target, *, allow_private: bool) -> list[IPAddress]:
    """The target's addresses to connect to, in the resolver's order. Every address the name
    resolves to must be allowed (an attacker's name may list a public address beside an
    internal one)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError):
            raise BadUserInput(f"The host {target.host!r} could not be resolved.") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            raise BadUserInput(f"The host {target.host!r} could not be resolved.")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise BadUserInput(
                    f"The host {target.host!r} resolves to {reason} ({address}); "
                    "webhooks may only target public addresses."
                )
    return addresses


async def vet(url: str, *, allow_private: bool) -> Target:
    target = parse(url)
    await resolve(target, allow_private=allow_private)
    return target
