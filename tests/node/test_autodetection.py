"""calico/node's IPv6 autodetection methods (no root): calicoctl's checks of a method, in its words,
and what interface= and can-reach= pick (can-reach over the loopback: a UDP socket connected to ::1)."""

import ipaddress
import socket

import pytest

from calisim.node import autodetection

LINKS = [("lo", ipaddress.ip_interface("::1/128")), ("h1-eth0", ipaddress.ip_interface("fd00:3::229/64")),
         ("h1-eth1", ipaddress.ip_interface("fd00:4::229/64"))]


@pytest.mark.parametrize("method, message", [
    ("best-found", "Error executing command: invalid IP autodetection method: best-found"),
    ("interface=eth[0", "Error executing command: invalid interface regex specified for IP autodetection: eth[0"),
    ("can-reach=192.168.3.1", "Error executing command: address for IP autodetection does not resolve to an IPv6 "
                              "address: 192.168.3.1"),
])
def test_calicoctl_refuses_a_bad_method_in_its_words(method, message):
    with pytest.raises(autodetection.AutodetectionError) as refused:
        autodetection.check_method(method, 6)
    assert str(refused.value) == message


def test_a_destination_that_does_not_resolve_is_refused(monkeypatch):
    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with pytest.raises(autodetection.AutodetectionError, match="cannot resolve address specified for IP "
                                                               "autodetection: nowhere.example"):
        autodetection.check_method("can-reach=nowhere.example", 6)


@pytest.mark.parametrize("method", ["first-found", "interface=eth1, eth0", "can-reach=fd00:3::1"])
def test_good_methods_pass_calicoctls_check(method):
    autodetection.check_method(method, 6)


def test_interface_picks_the_first_address_on_an_interface_matching_any_regex(monkeypatch):
    monkeypatch.setattr(autodetection, "host_interfaces", lambda version: LINKS)
    assert autodetection.detect("interface=eth1", 6) == (
        LINKS[2][1], "Using autodetected IPv6 address fd00:4::229/64 on matching interface h1-eth1")
    assert autodetection.detect("interface=nomatch, eth.", 6)[0] == LINKS[1][1]  # searched anywhere in the name
    with pytest.raises(autodetection.AutodetectionError, match=r"using interface regexes \['wlan.\*'\]"):
        autodetection.detect("interface=wlan.*", 6)


def test_can_reach_picks_the_address_the_routing_table_uses_toward_the_destination(monkeypatch):
    monkeypatch.setattr(autodetection, "host_interfaces", lambda version: LINKS)
    assert autodetection.detect("can-reach=::1", 6) == (
        LINKS[0][1], "Using autodetected IPv6 address ::1/128, detected by connecting to ::1")
    monkeypatch.setattr(autodetection, "host_interfaces", lambda version: LINKS[1:])
    with pytest.raises(autodetection.AutodetectionError, match="::1 is on no interface of this host"):
        autodetection.detect("can-reach=::1", 6)


def test_an_unknown_method_reaching_calico_node_is_fatal():
    with pytest.raises(autodetection.AutodetectionError, match="Invalid IP autodection method: skip-interface=eth0"):
        autodetection.detect("skip-interface=eth0", 6)
