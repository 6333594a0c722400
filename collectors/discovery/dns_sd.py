"""Prometheus ``dns_sd``: A, AAAA or SRV records, re-resolved every ``refresh`` seconds.

A/AAAA: every address of each name becomes ``address:port`` (``port`` is required, as in
Prometheus). SRV: every record's target and port; the target host is resolved through
the same server to its addresses, so a name only that server knows still scrapes (where
it has none, ``host:port`` is used as written). Labels as Prometheus sets them:
``__meta_dns_name``, ``__meta_dns_srv_record_target``, ``__meta_dns_srv_record_port``.

A name that does not exist (NXDOMAIN) or has no such record has no targets: that is how a
fleet scaled to zero looks. A server that does not answer is an error, and the runner
keeps the last good list meanwhile. ``nameserver`` (``ip`` or ``ip:port``) asks that
server instead of the system's resolvers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from .groups import Discovered, DiscoveryError, discovered

TYPES = ("A", "AAAA", "SRV")


def parse_nameserver(text: str) -> tuple[str, int]:
    """``ip``, ``ip:port`` or ``[ipv6]:port`` → (ip, port); DiscoveryError when malformed."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 53
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise DiscoveryError(f"dns nameserver: bad port in {text!r}")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise DiscoveryError(f"dns nameserver: must be an IP address[:port], got {text!r}") from None
    if not 0 < port < 65536:
        raise DiscoveryError(f"dns nameserver: port out of range in {text!r}")
    return host, port


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class DnsSD:
    """Targets from DNS records."""

    names: Sequence[str]
    type: str = "SRV"
    port: int = 0  # A/AAAA only
    nameserver: str = ""  # ip[:port]; empty: the system's resolvers
    refresh: float = 30.0
    timeout: float = 5.0
    name: str = "dns"

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise DiscoveryError(f"dns type: must be one of {', '.join(TYPES)}, got {self.type!r}")
        if not self.names or not all(isinstance(n, str) and n.strip() for n in self.names):
            raise DiscoveryError("dns names: need at least one DNS name")
        if self.type != "SRV" and not 0 < self.port < 65536:
            raise DiscoveryError(f"dns port: an {self.type} lookup needs the port to scrape "
                                 "(1-65535)")
        if self.nameserver:
            parse_nameserver(self.nameserver)

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if not self.nameserver:
            resolver = dns.asyncresolver.Resolver()
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            host, port = parse_nameserver(self.nameserver)
            resolver.nameservers = [host]
            resolver.port = port
        resolver.lifetime = self.timeout
        return resolver

    async def discover(self) -> list[Discovered]:
        resolver = self._resolver()
        out: dict[str, Discovered] = {}
        for name in self.names:
            for labels in await self._lookup(resolver, name):
                target = discovered(labels)
                out.setdefault(target.name, target)
        return list(out.values())

    async def _lookup(self, resolver: dns.asyncresolver.Resolver,
                      name: str) -> list[dict[str, str]]:
        if self.type != "SRV":
            return [{"__address__": _join(ip, self.port), "__meta_dns_name": name}
                    for ip in await self._addresses(resolver, name, self.type)]
        out = []
        for record in await self._records(resolver, name, "SRV"):
            host = str(record.target).rstrip(".")
            ips = (await self._addresses(resolver, host, "A")
                   + await self._addresses(resolver, host, "AAAA")) or [host]
            for ip in ips:
                out.append({"__address__": _join(ip, record.port), "__meta_dns_name": name,
                            "__meta_dns_srv_record_target": host + ".",
                            "__meta_dns_srv_record_port": str(record.port)})
        return out

    async def _addresses(self, resolver: dns.asyncresolver.Resolver, name: str,
                         kind: str) -> list[str]:
        return sorted({r.address for r in await self._records(resolver, name, kind)})

    async def _records(self, resolver: dns.asyncresolver.Resolver, name: str,
                       kind: str) -> list:
        try:
            answer = await resolver.resolve(name, kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise DiscoveryError(f"dns {name} {kind}: timed out"
                                 + (f" (server {self.nameserver})" if self.nameserver else ""))
        except dns.exception.DNSException as exc:
            raise DiscoveryError(f"dns {name} {kind}: {' '.join(str(exc).split())}") from None
        return list(answer)
