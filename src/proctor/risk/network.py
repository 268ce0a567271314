"""What an IP address is: configured labels (``corp``, ``vpn``), deny and anonymizer lists, geo.

Every table is a set of CIDR ranges matched longest-prefix first. Lookups go through one dict
per prefix length (at most 33 for IPv4, 129 for IPv6), so a lookup costs a few dict probes
whatever the table's size. Geo comes from a CIDR→location table in the config, or from a
MaxMind-format ``.mmdb`` file (GeoLite2-City / -ASN layout) when ``it is configured (read with
``maxminddb``, MaxMind's reader).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import maxminddb

from proctor.errors import InputError
from proctor.events.schema import Geo

__all__ = ["CidrTable", "GeoTable", "NetworkClassifier", "read_cidr_file"]

T = TypeVar("T")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=65536)  # the same client addresses come back request after request
def _parse_ip(address: str) -> IPAddress:
    return ipaddress.ip_address(address)


def _as_ip(address: str | IPAddress) -> IPAddress:
    ip = _parse_ip(address) if isinstance(address, str) else address
    # An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is the IPv4 address for every table.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class CidrTable(Generic[T]):
    """CIDR ranges → values; ``lookup`` returns the value of the longest matching prefix."""

    def __init__(self, entries: Iterable[tuple[str, T]] = ()) -> None:
        # (version, prefix length) → {network address as int: value}
        self._by_len: dict[tuple[int, int], dict[int, T]] = {}
        for cidr, value in entries:
            self.add(cidr, value)

    def add(self, cidr: str, value: T) -> None:
        """Add a range (``10.0.0.0/8``, ``2001:db8::/32``, or one address)."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise InputError(f"invalid CIDR {cidr!r}: {exc}") from None
        key = (net.version, net.prefixlen)
        self._by_len.setdefault(key, {})[int(net.network_address)] = value
        # Longest prefixes first, so the first hit is the most specific.
        self._by_len = dict(sorted(self._by_len.items(), key=lambda kv: -kv[0][1]))

    def lookup(self, address: str | IPAddress) -> T | None:
        """The most specific range's value, or None."""
        ip = _as_ip(address)
        bits = 32 if ip.version == 4 else 128
        n = int(ip)
        for (version, length), nets in self._by_len.items():
            if version != ip.version:
                continue
            value = nets.get(n >> (bits - length) << (bits - length))
            if value is not None:
                return value
        return None

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_len.values())


def read_cidr_file(path: Path) -> list[str]:
    """One CIDR per line; ``#`` starts a comment. Errors name the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read CIDR list {path}: {exc.strerror}") from None
    out = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: invalid CIDR {text!r}: {exc}") from None
        out.append(text)
    return out


@dataclass(frozen=True)
class GeoRow:
    """One row of a configured geo table."""

    cidr: str
    country: str | None = None
    city: str | None = None
    lat_e6: int | None = None
    lon_e6: int | None = None
    asn: int | None = None


class GeoTable:
    """Geo by CIDR from the config, with an optional ``.mmdb`` file behind it."""

    def __init__(self, rows: Iterable[GeoRow] = (), mmdb: Iterable[Path] = ()) -> None:
        self._table: CidrTable[Geo] = CidrTable()
        for row in rows:
            geo = Geo(
                country=row.country,
                city=row.city,
                lat_e6=row.lat_e6,
                lon_e6=row.lon_e6,
                asn=row.asn,
            )
            self._table.add(row.cidr, geo)
        # GeoLite2 ships City and ASN as separate files: every file is asked, first answer wins.
        self._readers: list[Any] = []
        for path in mmdb:
            try:
                self._readers.append(maxminddb.open_database(str(path)))
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot open GeoIP database {path}: {exc}") from None

    def lookup(self, address: str) -> Geo | None:
        """The configured row for the address, else what the mmdb files say, else None."""
        ip = _as_ip(address)
        geo = self._table.lookup(ip)
        if geo is not None or not self._readers:
            return geo
        merged: dict[str, Any] = {}
        for reader in self._readers:
            try:
                record = reader.get(str(ip))
            except ValueError:  # an IPv6 address asked of an IPv4-only database
                continue
            if isinstance(record, Mapping):
                part = _from_mmdb(record)
                for key in Geo.__struct_fields__:
                    if merged.get(key) is None and part.get(key) is not None:
                        merged[key] = part[key]
        return Geo(**merged) if merged else None


def _from_mmdb(record: Mapping[str, Any]) -> dict[str, Any]:
    """A GeoLite2-City/-ASN style record → Geo fields (coordinates as micro-degrees)."""
    country = (record.get("country") or {}).get("iso_code")
    city = ((record.get("city") or {}).get("names") or {}).get("en")
    loc = record.get("location") or {}
    lat, lon = loc.get("latitude"), loc.get("longitude")
    asn = record.get("autonomous_system_number")
    lat_e6, lon_e6 = _micro(lat, 90), _micro(lon, 180)
    if lat_e6 is None or lon_e6 is None:  # half a coordinate is no location
        lat_e6 = lon_e6 = None
    return {
        "country": country if isinstance(country, str) and len(country) == 2 else None,
        "city": city if isinstance(city, str) and len(city) <= 256 else None,
        "lat_e6": lat_e6,
        "lon_e6": lon_e6,
        "asn": asn if isinstance(asn, int) and 0 <= asn < 2**32 else None,
    }


def _micro(degrees: object, limit: int) -> int | None:
    if isinstance(degrees, int | float) and -limit <= degrees <= limit:
        return round(degrees * 1_000_000)
    return None


class NetworkClassifier:
    """Labels, list membership and geo for an address, from the risk configuration."""

    def __init__(
        self,
        labels: Mapping[str, Iterable[str]] | None = None,
        deny: Iterable[str] = (),
        anonymizers: Iterable[str] = (),
        geo: GeoTable | None = None,
    ) -> None:
        self._labels: list[tuple[str, CidrTable[bool]]] = [
            (name, CidrTable((c, True) for c in cidrs)) for name, cidrs in (labels or {}).items()
        ]
        self._deny: CidrTable[bool] = CidrTable((c, True) for c in deny)
        self._anon: CidrTable[bool] = CidrTable((c, True) for c in anonymizers)
        self.geo = geo or GeoTable()

    def labels(self, address: str) -> tuple[str, ...]:
        """Every configured label whose ranges hold the address, in config order."""
        ip = _as_ip(address)
        return tuple(name for name, table in self._labels if table.lookup(ip))

    def denied(self, address: str) -> bool:
        """On the deny list."""
        return bool(self._deny.lookup(address))

    def anonymizer(self, address: str) -> bool:
        """On the anonymizer (Tor exit, public VPN, proxy) list."""
        return bool(self._anon.lookup(address))
