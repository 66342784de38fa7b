"""Saving a lab and bringing it back.  Without root: the saved file's checks (truncated, corrupt,
another version, a snapshot that does not match its checksum, a member that would land outside a
host's view), the docker commands a saved container is made again with, a host's /etc files put
back.  As root, one round trip of the seed shared by the module: the seed's walk-through on a
lab, saved, the lab down, a new lab up from the file; the same Calico state, the workloads on the
same addresses in the same blocks, a host's own /etc file, and the seed's pings pass; and a lab
whose dockerd does not answer is not saved; route reflectors come back with their sessions."""

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from calisim import scenarios
from calisim.emulation import snapshot, wait_until
from calisim.emulation.rundir import RunDir

from tests.conftest import calisim

SAVED, RESTORED = "snap-a", "snap-b"
SEED = Path(scenarios.__file__).parent / "transcripts" / "two_host.txt"


def inspected(name: str, docker: str = "running") -> dict:
    """The inspect document of a running container (the emulated dockerd's, as `docker inspect` prints it)."""
    return {"Name": f"/{name}", "Created": "2026-12-07T11:00:00Z",
            "State": {"Running": docker == "running"},
            "Config": {"Image": "busybox", "Cmd": ["sh"], "Entrypoint": None, "Tty": True, "OpenStdin": True},
            "HostConfig": {"NetworkMode": "net2"},
            "NetworkSettings": {"Networks": {
                "net1": {"IPAddress": "10.10.225.7", "GlobalIPv6Address": "", "IPAMConfig": None},
                "net2": {"IPAddress": "" if docker != "running" else "10.10.225.8", "GlobalIPv6Address": "",
                         "IPAMConfig": {"IPv4Address": "10.10.225.8"} if docker != "running" else None}}}}


def saved_lab(etcd_db: bytes, **changes) -> snapshot.SavedLab:
    container = snapshot.SavedContainer.from_inspect(inspected("w1"))
    fields = {"name": "lab", "topology": "two_host", "options": {"etcd_members": 3}, "ipip_backend": "auto",
              "bgp_hold_time": 3, "etcd_sha256": hashlib.sha256(etcd_db).hexdigest(),
              "hosts": [snapshot.SavedHost("host1", "calicoctl node run --name 192.168.3.229", [container]),
                        snapshot.SavedHost("host2", None)], **changes}
    return snapshot.SavedLab(**fields)


def write_members(path: Path, members: dict[str, bytes]) -> None:
    """A saved file's tar, member by member, as another writer might have made it."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_a_running_container_is_made_again_on_its_first_network_then_connected_to_the_others():
    container = snapshot.SavedContainer.from_inspect(inspected("w1"))
    assert container.commands() == [
        "docker run -d -t -i --name w1 --net net2 --ip 10.10.225.8 busybox sh",
        "docker network connect --ip 10.10.225.7 net1 w1"]


def test_a_stopped_container_is_created_with_the_addresses_it_asked_for_and_its_entrypoint():
    document = inspected("w2", docker="exited")
    document["Config"].update(Entrypoint=["/bin/sleep", "-v"], Cmd=["10"], Tty=False, OpenStdin=False)
    assert snapshot.SavedContainer.from_inspect(document).commands()[0] == \
        "docker create --name w2 --net net2 --ip 10.10.225.8 --entrypoint /bin/sleep busybox -v 10"


def test_a_user_bridge_network_is_made_again_with_its_ipam_before_its_containers():
    network = snapshot.SavedNetwork.from_inspect(
        {"Name": "my br", "IPAM": {"Config": [{"Subnet": "172.30.5.0/24", "IPRange": "172.30.5.128/25",
                                               "Gateway": "172.30.5.1", "AuxiliaryAddresses": {"spare": "172.30.5.9"}}]}})
    assert network.command() == ("docker network create --driver bridge --subnet 172.30.5.0/24 --ip-range "
                                 "172.30.5.128/25 --gateway 172.30.5.1 --aux-address spare=172.30.5.9 'my br'")
    host = snapshot.SavedHost("host1", None, [], [network])
    lab = saved_lab(b"db", hosts=[host])
    assert snapshot.SavedLab.from_json(lab.to_json()).hosts == [host]


def test_the_summary_counts_calico_nodes_reflectors_and_containers():
    assert saved_lab(b"db").summary() == "1 calico-node, 1 container"
    reflector = snapshot.SavedHost("rr1", "routereflector run --ip 172.16.254.1")
    assert saved_lab(b"db", hosts=[*saved_lab(b"db").hosts, reflector]).summary() == \
        "1 calico-node, 1 route reflector, 1 container"


def test_a_saved_file_reads_back_as_written(tmp_path):
    saved = saved_lab(b"etcd snapshot bytes")
    snapshot.write(tmp_path / "lab.calisim", saved, b"etcd snapshot bytes")
    assert snapshot.read(tmp_path / "lab.calisim") == (saved, b"etcd snapshot bytes")
    assert saved.containers == 1 and [p.name for p in tmp_path.iterdir()] == ["lab.calisim"]  # no temporary left


def test_a_hosts_etc_files_go_back_into_the_upper_directory_of_its_view(tmp_path):
    upper = tmp_path / "upper"
    (upper / "docker").mkdir(parents=True)
    (upper / "docker" / "daemon.json").write_text('{"labels": ["calisim.saved=yes"]}')
    snapshot.write(tmp_path / "lab.calisim", saved_lab(b"db"), b"db", {"host2": upper})
    saved, etcd_db = snapshot.unpack(tmp_path / "lab.calisim", RunDir(tmp_path / "run"))
    assert (saved, etcd_db.read_bytes()) == (saved_lab(b"db"), b"db")
    restored = tmp_path / "run" / "hosts" / "host2" / "overlay" / "etc" / "upper" / "docker" / "daemon.json"
    assert restored.read_text() == '{"labels": ["calisim.saved=yes"]}'


@pytest.mark.parametrize("name, message", [("etc/host1/../../../../escaped", "cannot be restored"),
                                           ("etc/../x/file", "is not a host's file")])
def test_a_file_that_would_land_outside_a_hosts_view_is_refused(tmp_path, name, message):
    path = tmp_path / "lab.calisim"
    write_members(path, {snapshot.MANIFEST: saved_lab(b"db").to_json().encode(), snapshot.ETCD_DB: b"db", name: b"x"})
    with pytest.raises(snapshot.SaveError, match=message):
        snapshot.unpack(path, RunDir(tmp_path / "run"))
    assert not list(tmp_path.rglob("escaped")) and not (tmp_path / "run" / "hosts").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:len(data) // 2], "is not a saved lab, or it is truncated or corrupt"),
    (lambda data: b"\x00" * len(data), "is not a saved lab, or it is truncated or corrupt"),
    (lambda data: gzip.compress(gzip.decompress(data).replace(b"etcd snapshot bytes", b"etcd snapshot BYTES")),
     "its etcd snapshot does not match the checksum saved with it"),
])
def test_a_truncated_or_corrupt_file_is_refused_with_one_line(tmp_path, damage, message):
    path = tmp_path / "lab.calisim"
    snapshot.write(path, saved_lab(b"etcd snapshot bytes"), b"etcd snapshot bytes")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(snapshot.SaveError, match=message) as refused:
        snapshot.read(path)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("changes, message", [
    ({"calisim": "0.0.1"}, r"was saved by calisim 0\.0\.1 \(format 1\); this is calisim .* save the lab again"),
    ({"format": 99}, r"\(format 99\); this is calisim .* \(format 1\)"),
    ({"format": 2, "hosts": {"a": "field this version does not know"}, "volumes": []}, r"\(format 2\)"),
])
def test_a_file_from_another_version_is_refused(tmp_path, changes, message):
    path = tmp_path / "lab.calisim"
    document = {**json.loads(saved_lab(b"db").to_json()), **changes}
    write_members(path, {snapshot.MANIFEST: json.dumps(document).encode(), snapshot.ETCD_DB: b"db"})
    with pytest.raises(snapshot.SaveError, match=message):
        snapshot.read(path)


def test_a_missing_file_or_a_manifest_calisim_did_not_write_is_refused(tmp_path):
    with pytest.raises(snapshot.SaveError, match="lab.calisim: no such file"):
        snapshot.read(tmp_path / "lab.calisim")
    path = tmp_path / "lab.calisim"
    manifest = {**json.loads(saved_lab(b"db").to_json()), "hosts": 7}
    write_members(path, {snapshot.MANIFEST: json.dumps(manifest).encode(), snapshot.ETCD_DB: b"db"})
    with pytest.raises(snapshot.SaveError, match="its calisim-save.json is not one calisim writes"):
        snapshot.read(path)


# -- the seed's round trip (root) ------------------------------------------------------------
def run_transcript(text: str, lab: str, tmp: Path) -> subprocess.CompletedProcess:
    script = tmp / f"{lab}.txt"
    script.write_text(text)
    return calisim("run", str(script), "--lab", lab)


def calico_state(lab: str) -> dict:
    """What Calico's state looks like from a host: pools, nodes, and each workload's endpoint networks."""
    state = {}
    for command in ("calicoctl get ipPool -o wide", "calicoctl get node",
                    "calicoctl get workloadEndpoint -o wide | awk 'NR>1 {print $1, $5}' | sort"):
        done = calisim("exec", "--lab", lab, "host1", "--", "sh", "-c", command)
        assert done.returncode == 0, done.stderr
        state[command] = done.stdout
    return state


def world(lab: str) -> dict:
    """Per host: calico-node, BGP sessions, blocks, and each workload's addresses."""
    done = calisim("inspect", lab, "--json")
    assert done.returncode == 0, done.stderr
    return {host["name"]: (host.get("calico_node"), host.get("established"), host.get("blocks"),
                           sorted((w["name"], tuple(w["addresses"])) for w in host.get("workloads", [])))
            for host in json.loads(done.stdout)["hosts"]}


@pytest.fixture(scope="module")
def round_trip(labs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snapshot")
    done = calisim("up", "two_host", "--name", SAVED)
    assert done.returncode == 0, done.stdout + done.stderr
    seeded = calisim("run", str(SEED), "--lab", SAVED)
    assert seeded.returncode == 0, seeded.stdout[-2000:]
    wrote = calisim("exec", "--lab", SAVED, "host2", "--", "sh", "-c",
                    "mkdir -p /etc/docker && echo '{\"labels\": [\"calisim.saved=yes\"]}' > /etc/docker/daemon.json")
    assert wrote.returncode == 0, wrote.stderr
    bridged = calisim("exec", "--lab", SAVED, "host1", "--", "docker", "network", "create", *BRIDGE_OPTIONS, "saved-br")
    assert bridged.returncode == 0, bridged.stderr
    before = {"world": world(SAVED), "calico": calico_state(SAVED), "bridge": bridge_ipam(SAVED)}
    saved = calisim("save", SAVED, "-o", str(tmp / "seed.calisim"))
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout == f"calisim: saved lab {SAVED} (two_host: 2 calico-nodes, 5 containers) to {tmp}/seed.calisim\n"
    assert calisim("down", SAVED).returncode == 0
    restored = calisim("up", "--from", str(tmp / "seed.calisim"), "--name", RESTORED)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    return before, tmp


@pytest.mark.emulation
def test_the_restored_seed_has_its_workloads_on_their_addresses_in_the_same_blocks(round_trip):
    before, _ = round_trip
    after = world(RESTORED)
    assert after == before["world"]
    assert sum(len(host[3]) for host in after.values()) == 5
    assert all(running and established == 1 for running, established, _, _ in after.values()), after


BRIDGE_OPTIONS = ("--subnet", "172.30.5.0/24", "--ip-range", "172.30.5.128/25", "--gateway", "172.30.5.1",
                  "--aux-address", "spare=172.30.5.9")


def bridge_ipam(lab: str) -> str:
    done = calisim("exec", "--lab", lab, "host1", "--", "docker", "network", "inspect", "-f", "{{json .IPAM.Config}}",
                   "saved-br")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.emulation
def test_a_user_bridge_network_comes_back_with_its_ipam(round_trip):
    before, _ = round_trip
    assert "172.30.5.128/25" in before["bridge"] and "spare" in before["bridge"]
    assert bridge_ipam(RESTORED) == before["bridge"]


@pytest.mark.emulation
def test_the_restored_seed_has_calicos_state_and_each_address_allocated_once(round_trip):
    before, _ = round_trip
    after = calico_state(RESTORED)
    assert after == before["calico"]
    networks = after["calicoctl get workloadEndpoint -o wide | awk 'NR>1 {print $1, $5}' | sort"].split()[1::2]
    assert len(networks) == len(set(networks)) == 5  # the old endpoints forgotten, none left twice


@pytest.mark.emulation
def test_the_seeds_pings_pass_on_the_restored_lab(round_trip):
    _, tmp = round_trip
    text = SEED.read_text()
    pings = text[text.index("# Same network"):]
    done = run_transcript(pings, RESTORED, tmp)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "ttl=62" in done.stdout and ", 0 failed;" in done.stdout + done.stderr


@pytest.mark.emulation
def test_what_a_host_wrote_into_its_etc_comes_back_on_that_host_only(round_trip):
    done = calisim("exec", "--lab", RESTORED, "host2", "--", "cat", "/etc/docker/daemon.json")
    assert (done.returncode, done.stdout) == (0, '{"labels": ["calisim.saved=yes"]}\n'), done.stderr
    labels = calisim("exec", "--lab", RESTORED, "host2", "--", "docker", "info", "--format", "{{.Labels}}")
    assert "calisim.saved=yes" in labels.stdout, labels.stderr  # and host2's dockerd started with it
    assert calisim("exec", "--lab", RESTORED, "host1", "--", "test", "-e", "/etc/docker/daemon.json").returncode == 1


@pytest.mark.emulation
def test_a_lab_whose_dockerd_does_not_answer_is_not_saved(round_trip):
    _, tmp = round_trip
    assert calisim("fault", "--lab", RESTORED, "kill", "host2", "dockerd").returncode == 0
    try:
        done = calisim("save", RESTORED, "-o", str(tmp / "half.calisim"))
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr.startswith("calisim: cannot list host2's containers: Cannot connect to the Docker daemon")
        assert done.stderr.count("\n") == 1 and not (tmp / "half.calisim").exists()
    finally:
        assert calisim("fault", "--lab", RESTORED, "start", "host2", "dockerd").returncode == 0


@pytest.mark.emulation
def test_route_reflectors_come_back_with_their_sessions(labs, tmp_path):
    assert calisim("up", "flat", "--hosts", "2", "--route-reflectors", "1", "--start-nodes", "--name", "snap-rr",
                   "--bgp-hold-time", "3").returncode == 0
    wait_until(lambda: [world("snap-rr")[host][1] for host in ("host1", "host2")] == [1, 1], 30, interval=0.5,
               what="each host's session to rr1")  # `up` may return while the mesh gives way to the reflector
    before = world("snap-rr")
    saved = calisim("save", "snap-rr", "-o", str(tmp_path / "rr.calisim"))
    assert saved.stdout.startswith("calisim: saved lab snap-rr (flat: 2 calico-nodes, 1 route reflector, 0 containers)")
    assert calisim("down", "snap-rr").returncode == 0
    assert calisim("up", "--from", str(tmp_path / "rr.calisim"), "--name", "snap-rr2").returncode == 0
    assert world("snap-rr2") == before and before["host1"][1] == 1  # host1's one session: to rr1
    reflector = calisim("exec", "--lab", "snap-rr2", "rr1", "--", "birdc", "-s", "/var/run/calico/bird.ctl",
                        "show", "protocols")
    assert reflector.stdout.count("Established") == 2, reflector.stdout
    assert calisim("down", "snap-rr2").returncode == 0
