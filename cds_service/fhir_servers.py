"""Which FHIR servers a caller may make this service read from (`fhirServer` of a hook call).

The service sends the EHR's bearer token to `fhirServer` and reads what it answers, so the URL
is checked before any request is made:

- its shape: an http(s) URL with a host, no credentials, query or fragment (else 400);
- the caller: an issuer configured with `fhir_servers` may name only those bases (else 403). In
  production an issuer without that list may name none: every FHIR server must be configured;
- in development, where unsigned calls are accepted, any host may be named except link-local,
  unspecified, multicast and cloud metadata addresses, whatever name resolves to them (403).
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Mapping
from urllib.parse import urlsplit

# Cloud instance-metadata endpoints outside the link-local ranges.
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"})
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def normalise(url: str) -> str:
    """The base URL in one spelling (scheme and host in lower case, no default port, no trailing
    slash); Refused(400) when it is not a usable http(s) base URL."""
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise Refused(400, "'fhirServer' must be an http(s) URL without spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise Refused(400, "'fhirServer' is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise Refused(400, "'fhirServer' must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise Refused(400, "'fhirServer' must not carry credentials")
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        raise Refused(400, "'fhirServer' must be a base URL, without a query or fragment")
    if port is not None and not 0 < port < 65536:
        raise Refused(400, "'fhirServer' has an invalid port")
    shown_host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[scheme]
    netloc = shown_host if port in (None, default) else f"{shown_host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def forbidden_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return False  # a FHIR server on this machine: the Sandbox's and the demo's, in development
    return (address.is_link_local or address.is_unspecified or address.is_multicast or address.is_reserved
            or address in METADATA_ADDRESSES)


def resolved(host: str) -> list:
    """The addresses a host name stands for (an IP literal is itself); [] when it does not resolve."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


class FhirServerPolicy:
    def __init__(self, allowed: Mapping[str, Iterable[str]], production: bool):
        """allowed: {issuer: FHIR base URLs that issuer's calls may name}."""
        self.allowed = {iss: frozenset(normalise(u) for u in urls) for iss, urls in allowed.items()}
        self.production = production

    def check(self, url: str, issuer: str | None) -> bool:
        """Whether the URL is a FHIR server configured for the caller (None: an unsigned call); Refused
        when the caller may not name it (400 malformed, 403 not allowed)."""
        base = normalise(url)
        allowed = self.allowed.get(issuer) if issuer else None
        if allowed is not None or self.production:
            if base not in (allowed or ()):
                raise Refused(403, "'fhirServer' is not a FHIR server this client is allowed to name "
                                   "(see fhir_servers in CDS_TRUSTED_ISSUERS)")
            return True
        host = urlsplit(base).hostname
        if host in METADATA_HOSTS or any(forbidden_address(a) for a in resolved(host)):
            raise Refused(403, "'fhirServer' names a link-local or metadata address, which is never read")
        return False
