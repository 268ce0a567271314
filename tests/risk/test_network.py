"""Address tables: longest prefix wins, IPv4-mapped addresses, CIDR files, GeoIP."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from proctor.errors import InputError
from proctor.events.schema import Geo
from proctor.risk.network import CidrTable, GeoRow, GeoTable, NetworkClassifier, read_cidr_file


def test_longest_prefix_wins_for_v4_and_v6() -> None:
    t = CidrTable([("10.0.0.0/8", "wide"), ("10.1.0.0/16", "narrow"), ("10.1.2.3", "host")])
    t.add("2001:db8::/32", "v6")
    assert t.lookup("10.200.0.1") == "wide"
    assert t.lookup("10.1.9.9") == "narrow"
    assert t.lookup("10.1.2.3") == "host"
    assert t.lookup("::ffff:10.1.9.9") == "narrow"  # IPv4-mapped IPv6 is the IPv4 address
    assert t.lookup("2001:db8:1::5") == "v6"
    assert t.lookup("11.0.0.1") is None
    assert t.lookup("2001:db9::1") is None
    assert len(t) == 4
    with pytest.raises(InputError, match=r"invalid CIDR '10\.0\.0\.0/33'"):
        t.add("10.0.0.0/33", "x")


def test_cidr_files_name_the_bad_line(tmp_path: Path) -> None:
    f = tmp_path / "deny.txt"
    f.write_text("# Tor exits\n185.220.100.0/22  # a comment\n\n2001:db8::/32\n")
    assert read_cidr_file(f) == ["185.220.100.0/22", "2001:db8::/32"]
    f.write_text("10.0.0.0/8\nnot-an-ip\n")
    with pytest.raises(InputError, match=r"deny.txt:2: invalid CIDR 'not-an-ip'"):
        read_cidr_file(f)
    with pytest.raises(InputError, match="cannot read CIDR list"):
        read_cidr_file(tmp_path / "missing.txt")


def test_classifier_labels_and_lists() -> None:
    net = NetworkClassifier(
        {"corp": ["10.0.0.0/8"], "vpn": ["10.8.0.0/16"]},
        deny=["203.0.113.0/24"],
        anonymizers=["185.220.100.0/22"],
    )
    assert net.labels("10.8.1.1") == ("corp", "vpn")
    assert net.labels("192.0.2.1") == ()
    assert net.denied("203.0.113.7") and not net.denied("10.0.0.1")
    assert net.anonymizer("185.220.101.4") and not net.anonymizer("203.0.113.7")


def test_geo_from_config_rows_then_mmdb_files(tmp_path: Path) -> None:
    city = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    city.insert_network(
        IPSet(["81.2.69.0/24"]),
        {
            "country": {"iso_code": "GB"},
            "city": {"names": {"en": "London"}},
            "location": {"latitude": 51.5142, "longitude": -0.0931},
        },
    )
    city.insert_network(IPSet(["192.0.2.0/24"]), {"location": {"latitude": 123.0, "longitude": 0}})
    city.to_db_file(str(tmp_path / "city.mmdb"))
    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    asn.insert_network(IPSet(["81.2.69.0/24"]), {"autonomous_system_number": 20712})
    asn.to_db_file(str(tmp_path / "asn.mmdb"))
    geo = GeoTable(
        [GeoRow("10.0.0.0/8", country="DE", lat_e6=52_520_000, lon_e6=13_405_000, asn=64500)],
        mmdb=[tmp_path / "city.mmdb", tmp_path / "asn.mmdb"],
    )
    assert geo.lookup("10.1.1.1") == Geo(
        country="DE", lat_e6=52_520_000, lon_e6=13_405_000, asn=64500
    )
    assert geo.lookup("81.2.69.160") == Geo(
        country="GB", city="London", lat_e6=51_514_200, lon_e6=-93_100, asn=20712
    )
    assert geo.lookup("192.0.2.1") is None  # an impossible latitude is dropped, nothing left
    assert geo.lookup("8.8.8.8") is None
    with pytest.raises(InputError, match="cannot open GeoIP database"):
        GeoTable(mmdb=[tmp_path / "nope.mmdb"])
