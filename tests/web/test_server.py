"""`calisim web` in a real browser: Debian's Chromium driven by Playwright (never Playwright's own
browser download), on one two-host lab (nodes started, a 3 s BGP hold time so that a cut link
drops its session within seconds, a workload on each host) shared by the module.  The page is
checked against `inspect --json`; a link is taken down and healed from the page's form in one
tab and seen in another; bad values get a message beside the form; a probe stream is drawn as it
runs, to a workload's IPv4 or IPv6 address (the nodes run dual stack, the network is --ipv6); a
lab going down is said; `web` refuses an unknown lab and a port in use."""

import ipaddress
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from calisim.emulation.state import bgp_summary

from tests.conftest import PYTHON, calisim

LAB = "webduo"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RED, GREEN = "rgb(207,34,46)", "rgb(45,164,78)"
SESSION = "bgp:host1:host2"
WORKLOADS = """
host1$ calicoctl node run --ip6 fd00:3::229
host2$ calicoctl node run --ip6 fd00:3::228
within 30s host1$ calicoctl node status | grep -A4 'IPv6 BGP status' | grep -q Established
host1$ echo '{apiVersion: v1, kind: ipPool, metadata: {cidr: 10.10.0.0/16}, spec: {ipip: {enabled: true}}}' | calicoctl create -f -
host1$ docker network create --ipv6 --driver calico --ipam-driver calico-ipam net1
host1$ docker run --net net1 --name w1 -tid busybox
host2$ docker run --net net1 --name w2 -tid busybox
"""


def dual_stack(state: dict) -> None:
    """inspect's IPv6 beside IPv4: the hosts' addresses, bird6's sessions, /122 blocks, the
    workloads' addresses on the --ipv6 network; and the command line's table says the same."""
    hosts = {host["name"]: host for host in state["hosts"]}
    assert "fd00:3::229/64" in hosts["host1"]["interfaces"]["host1-eth0"]
    assert [(s["peer"], s["version"], s["state"]) for s in hosts["host2"]["bgp"]] == [
        ("192.168.3.229", 4, "Established"), ("fd00:3::229", 6, "Established")]
    for host in hosts.values():
        if "bgp" in host:
            lengths = [ipaddress.ip_network(block).prefixlen for block in host["blocks"]]
            assert 122 in lengths and lengths == sorted(lengths), host["blocks"]  # /26s first, then /122s
            assert all(len(w["addresses"]) == 2 and ":" in w["addresses"][1] for w in host["workloads"])
    table = calisim("inspect", LAB).stdout
    assert table.count("IPv4 1/1 · IPv6 1/1 Established") == 2 and "fd00:3::228/64" in table, table


def inspect(name: str = LAB) -> dict:
    done = calisim("inspect", name, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def duo(labs, tmp_path_factory):
    done = calisim("up", "two_host", "--start-nodes", "--bgp-hold-time", "3", "--name", LAB)
    assert done.returncode == 0, done.stdout + done.stderr
    script = tmp_path_factory.mktemp("web") / "workloads.txt"
    script.write_text(WORKLOADS)
    done = calisim("run", str(script), "--lab", LAB)
    assert done.returncode == 0, done.stdout + done.stderr
    return labs.find(LAB)


class WebServer:
    """`calisim web` on a free port, stopped by its PID."""

    def __init__(self, name: str):
        self.process = subprocess.Popen([PYTHON, "-m", "calisim", "web", "--lab", name, "--port", "0"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert " live on http://127.0.0.1:" in line, line + self.process.stderr.read()
        self.url = line.split(" live on ")[1].split()[0]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def server(duo):
    web = WebServer(LAB)
    yield web
    web.stop()
    assert web.process.returncode in (0, -15), web.process.stderr.read()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium with a fresh profile; a skip, saying why, only where it cannot start."""
    from playwright.sync_api import Error, sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium cannot start: {CHROMIUM} is not installed (make setup installs Debian's chromium)")
    with sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 820})
        except Error as error:
            pytest.skip(f"Chromium cannot start: {str(error).splitlines()[0]}")
        yield context
        context.close()


def open_page(browser, url: str):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_function("window.calisim && window.calisim.snapshot", timeout=15000)
    page.errors = errors
    return page


@pytest.fixture
def page(browser, server):
    opened = open_page(browser, server.url)
    yield opened
    assert opened.errors == []
    opened.close()


def session_colour(page) -> str:
    return page.evaluate(f"calisim.cy.getElementById('{SESSION}').style('line-color')").replace(" ", "")


def wait_for_session(page, colour: str, seconds: float) -> float:
    """Seconds until the drawn session has colour (a Playwright timeout after seconds)."""
    started = time.monotonic()
    page.wait_for_function(f"calisim.cy.getElementById('{SESSION}').style('line-color').replace(/ /g, '') === "
                           f"'{colour}'", timeout=seconds * 1000)
    return time.monotonic() - started


def screenshot(page, path: Path) -> None:
    """Once every host's picture is decoded (a box is never saved blank)."""
    page.wait_for_function("calisim.imagesPending === 0")
    page.screenshot(path=path)


def click_host(page, name: str) -> None:
    x, y = page.evaluate(f"""() => {{ const n = calisim.cy.getElementById('{name}').renderedPosition();
        const r = document.getElementById('graph').getBoundingClientRect(); return [r.left + n.x, r.top + n.y]; }}""")
    page.mouse.click(x, y)


def fill_fault(page, verb: str, *values: str) -> None:
    page.select_option("#verb", verb)
    for field, value in zip(page.locator("#fault-args > *").all(), values):
        field.fill(value)
    page.click("#fault-form button[type=submit]")


@pytest.mark.emulation
def test_the_page_shows_what_inspect_shows(page, tmp_path):
    state = inspect()
    drawn = page.evaluate("""() => calisim.cy.nodes().map(n => ({id: n.id(), kind: n.data('kind'),
        rows: (n.data('rows') || []).map(r => r.text), label: n.data('label')}))""")
    hosts = {n["id"]: n["rows"] for n in drawn if n["kind"] == "host"}
    assert set(hosts) == {h["name"] for h in state["hosts"]}
    assert {n["id"] for n in drawn if n["kind"] == "segment"} == {s["name"] for s in state["segments"]}
    for host in state["hosts"]:
        rows = hosts[host["name"]]
        assert all(address in rows for address in host["addresses"]), rows
        assert ("calico-node running" in rows) == host["calico_node"]
        assert bgp_summary(host["bgp"]) in rows
        assert [f"block {block}" for block in host["blocks"]] == [r for r in rows if r.startswith("block ")]
        for workload in host["workloads"]:
            assert f"{workload['name']} {' '.join(workload['addresses'])}" in rows
    assert all(s["state"] == "Established" for h in state["hosts"] for s in h["bgp"])
    dual_stack(state)
    assert session_colour(page) == GREEN
    assert page.inner_text("#faults") == "none" and state["faults"] == []
    assert "BGP sessions 1/1 Established" in page.inner_text("#summary")
    options = page.locator("#probe-source option").all_inner_texts()
    assert sorted(o.split()[0] for o in options) == ["w1", "w2"]
    click_host(page, "host1")
    page.wait_for_selector("#host-details details[data-view=bird]")
    bird = page.inner_text("#host-details details[data-view=bird] pre")
    assert "Mesh_192_168_3_228" in bird and "Established" in bird
    host2_block = next(h for h in state["hosts"] if h["name"] == "host2")["blocks"][0]
    assert f"{host2_block} via 192.168.3.228 dev tunl0 proto bird" in page.inner_text("#host-details")
    assert "table ip calico" in page.text_content("#host-details details[data-view=nftables] pre")  # folded
    assert "w1 10.10." in page.inner_text("#host-details details[data-view=workloads] pre")
    screenshot(page, tmp_path / "web.png")


@pytest.mark.emulation
def test_a_link_taken_down_from_the_form_turns_the_session_red_in_every_tab_and_heal_turns_it_green(
        page, browser, server, duo, tmp_path):
    other = open_page(browser, server.url)
    try:
        page.wait_for_function("document.getElementById('viewers').textContent === '2 pages watching'")
        fill_fault(page, "link", "host2", "s1", "down")
        page.wait_for_selector("#fault-message.ok")
        assert page.inner_text("#fault-message") == "fault link host2 s1 down: done"
        # the 3 s hold time runs out, the next poll pushes it: within 10 s
        assert wait_for_session(page, RED, 10) < 10
        wait_for_session(other, RED, 2)
        assert [f["fault"] for f in inspect()["faults"]] == ["link-down"]
        assert other.inner_text("#faults").splitlines()[0] == "link-down host2 s1"
        assert other.evaluate("calisim.cy.getElementById('link:host2:s1').data('state')") == "down"
        screenshot(page, tmp_path / "link-down.png")
        other.click("#faults button")  # Heal: `calisim fault link host2 s1 up`
        assert wait_for_session(page, GREEN, 20) < 20
        assert inspect()["faults"] == []
        page.wait_for_function("document.getElementById('faults').innerText === 'none'")
        other.close()  # noticed at the next heartbeat at the latest
        page.wait_for_function("document.getElementById('viewers').textContent === '1 page watching'", timeout=10000)
    finally:
        other.close()
        calisim("fault", "--lab", LAB, "link", "host2", "s1", "up")


@pytest.mark.emulation
def test_bad_fault_values_get_a_message_beside_the_form_and_change_nothing(page, duo):
    faults_log = Path(duo.run_dir) / "faults.log"
    before = faults_log.read_text() if faults_log.exists() else ""
    for verb, values, says in (("loss", ("host2", "s1", "150"), "between 0 and 100"),
                               ("link", ("host9", "s1", "down"), "host9"),
                               ("link", ("host2", "s1", "sideways"), "state must be down or up"),
                               ("kill", ("host2", "sshd"), "sshd")):
        page.evaluate("document.getElementById('fault-message').textContent = ''")
        fill_fault(page, verb, *values)
        page.wait_for_selector("#fault-message.error")
        message = page.inner_text("#fault-message")
        assert says in message and "\n" not in message, message
        page.evaluate("document.getElementById('fault-message').className = 'message'")
    assert inspect()["faults"] == []
    assert (faults_log.read_text() if faults_log.exists() else "") == before
    assert page.inner_text("#faults") == "none"


@pytest.mark.emulation
def test_a_probe_stream_is_drawn_window_by_window_as_it_runs(page):
    page.select_option("#probe-source", "host1/w1")
    page.select_option("#probe-destination", "host2/w2")
    page.fill("#probe-seconds", "3")
    page.click("#probe-form button[type=submit]")
    page.wait_for_selector("#probe-timeline rect.window")
    assert page.evaluate("calisim.probe.state") == "running"  # drawn before the stream ends
    page.wait_for_function("calisim.probe.state === 'done'", timeout=20000)
    shares = page.evaluate("[...document.querySelectorAll('#probe-timeline rect.window')].map(r => r.dataset.share)")
    assert len(shares) == 3 and set(shares) == {"1.00"}, shares
    assert "host1/w1 → host2/w2" in page.inner_text("#probe-summary")
    arrow = page.evaluate("(({source, target, label}) => [source, target, label])(calisim.cy.getElementById('probe').data())")
    assert arrow == ["host1", "host2", "probe w1 → w2: 50/50"]
    assert page.evaluate("calisim.cy.getElementById('probe').style('line-color')").replace(" ", "") == GREEN


@pytest.mark.emulation
def test_a_probe_stream_goes_to_the_ipv6_address_chosen(page):
    page.select_option("#probe-source", "host1/w1")
    options = page.evaluate("[...document.querySelectorAll('#probe-destination option')]"
                            ".map(o => [o.value, o.dataset.address])")
    ipv6 = next(address for value, address in options if value == "host2/w2" and ":" in address)
    page.select_option("#probe-destination", index=options.index(["host2/w2", ipv6]))
    page.fill("#probe-seconds", "2")
    page.click("#probe-form button[type=submit]")
    page.wait_for_function("([address]) => calisim.probe && calisim.probe.address === address "
                           "&& calisim.probe.state === 'done'", arg=[ipv6], timeout=20000)
    assert f"host1/w1 → host2/w2 ({ipv6}): done, 100/100 echoes answered" in page.inner_text("#probe-summary")


@pytest.mark.emulation
def test_the_page_says_when_the_lab_goes_down(browser, labs):
    assert calisim("up", "two_host", "--name", "webgone").returncode == 0
    web = WebServer("webgone")
    try:
        gone = open_page(browser, web.url)
        assert gone.inner_text("#status") == "live"
        assert calisim("down", "webgone").returncode == 0
        # (while it stops, the page may first say that it does not answer)
        gone.wait_for_function("document.getElementById('banner').textContent === 'lab webgone is down'",
                               timeout=10000)
        assert gone.is_visible("#banner")
        assert gone.inner_text("#status") == "lab down"
        gone.close()
    finally:
        web.stop()
        calisim("down", "webgone")


@pytest.mark.emulation
def test_web_refuses_an_unknown_lab_and_a_port_in_use_and_up_a_hold_time_under_3s(duo):
    done = calisim("up", "two_host", "--bgp-hold-time", "2", "--name", "tooshort")
    assert done.returncode == 2 and done.stderr == ("calisim: the BGP hold time must be a whole number of seconds, "
                                                    "at least 3 (BGP's minimum), not 2\n")
    done = calisim("web", "--lab", "nosuchlab", "--port", "0")
    assert done.returncode == 2 and done.stderr.startswith("calisim: no lab named 'nosuchlab' is running")
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = calisim("web", "--lab", LAB, "--port", str(port))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"calisim: port {port} on 127.0.0.1 is in use (choose another with --port)\n"
