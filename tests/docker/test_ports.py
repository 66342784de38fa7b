"""Port publishing's pure parts: what create asked, the host port each binding gets, Docker's
refusals and the views `docker port`, `docker ps` and inspect are made from (no root needed)."""

import pytest

from calisim.docker import ports
from calisim.docker.errors import APIError
from calisim.docker.ports import Binding, Publisher, Request, inspect_ports, requests, summary_ports

EXPOSED = {"ExposedPorts": {"90/tcp": {}, "80/tcp": {}}}


def test_requests_are_the_bindings_asked_and_with_publish_all_every_exposed_port():
    host_config = {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                    "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}
    assert requests(EXPOSED, host_config) == [Request(53, "udp", "127.0.0.1", ""), Request(80, "tcp", "0.0.0.0", "8080")]
    assert requests(EXPOSED, {**host_config, "PublishAllPorts": True})[-1] == Request(90, "tcp", "0.0.0.0", "")
    assert requests(EXPOSED, {}) == []  # exposed only: nothing published
    with pytest.raises(APIError, match="Invalid ip address: 1.2.3"):
        requests({}, {"PortBindings": {"80/tcp": [{"HostIp": "1.2.3", "HostPort": "1"}]}})
    with pytest.raises(APIError, match="Invalid proto: sctp"):
        requests({}, {"PortBindings": {"80/sctp": [{}]}})


def test_a_port_taken_on_the_same_address_or_on_every_address_is_refused_in_dockers_words():
    publisher = Publisher()
    publisher.held[Binding(80, "tcp", "0.0.0.0", 8080)] = None
    publisher.held[Binding(80, "tcp", "127.0.0.1", 9000)] = None
    with pytest.raises(APIError, match="on endpoint w .id.: Bind for 0.0.0.0:8080 failed: port is already allocated"):
        next(publisher.allocate(Request(81, "tcp", "0.0.0.0", "8080"), "w (id)"))
    with pytest.raises(APIError, match="Bind for 127.0.0.1:8080 failed: port is already allocated"):
        next(publisher.allocate(Request(81, "tcp", "127.0.0.1", "8080"), "w (id)"))
    assert next(publisher.allocate(Request(81, "udp", "0.0.0.0", "8080"), "w")).host_port == 8080  # another protocol
    assert next(publisher.allocate(Request(81, "tcp", "127.0.0.2", "9000"), "w")).host_port == 9000  # another address
    assert [b.host_port for b in publisher.allocate(Request(81, "tcp", "0.0.0.0", "8080-8082"), "w")] == [8081, 8082]
    with pytest.raises(APIError, match="Invalid hostPort: x"):
        next(publisher.allocate(Request(81, "tcp", "0.0.0.0", "x"), "w"))


def test_ports_as_inspect_and_docker_ps_show_them():
    bindings = [Binding(80, "tcp", "0.0.0.0", 8080)]
    assert inspect_ports(EXPOSED, bindings, running=True) == {
        "90/tcp": None, "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert inspect_ports(EXPOSED, bindings, running=False) == {}
    assert summary_ports(EXPOSED, bindings) == [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                                                {"PrivatePort": 90, "Type": "tcp"}]


def test_any_port_passes_over_one_another_process_holds_but_a_port_asked_does_not(monkeypatch):
    publisher = Publisher()

    def hold(binding, container_ip, endpoint):
        if binding.host_port == 32768:
            raise APIError(500, "Error starting userland proxy: listen tcp 0.0.0.0:32768: bind: address already in use")

    monkeypatch.setattr(publisher, "hold", hold)
    monkeypatch.setattr(ports, "local_port_range", lambda: range(32768, 32771))
    assert publisher.bind(Request(80, "tcp", "0.0.0.0", ""), "172.18.0.2", "w").host_port == 32769
    with pytest.raises(APIError, match="bind: address already in use"):
        publisher.bind(Request(80, "tcp", "0.0.0.0", "32768"), "172.18.0.2", "w")
