"""`docker run -v` and `docker volume` without a daemon: how Binds and Volumes become mounts, and
Docker 1.13's refusals (the mounts themselves: test_api.py, on a live cluster)."""

from pathlib import Path

import pytest

from calisim.docker import volumes
from calisim.docker.errors import APIError

STORE = Path("/run/docker/state/volumes")


def test_binds_named_and_anonymous_volumes_become_mounts():
    found = volumes.mounts("c" * 64, {"Binds": ["/srv/../srv/www:/www:ro", "cache:/var/cache", "/tmp:/t:rw"]},
                           {"Volumes": {"/data": {}}}, STORE)
    assert [m.spec() for m in found[:3]] == [["/srv/www", "/www", False], [f"{STORE}/cache/_data", "/var/cache", True],
                                             ["/tmp", "/t", True]]
    assert found[0].json() == {"Type": "bind", "Source": "/srv/www", "Destination": "/www", "Mode": "ro", "RW": False,
                               "Propagation": "rprivate"}
    assert found[1].json()["Name"] == "cache" and found[1].json()["Driver"] == "local"
    anonymous = found[3]
    assert anonymous.destination == "/data" and len(anonymous.name) == 64  # the same at every start:
    assert volumes.mounts("c" * 64, {}, {"Volumes": {"/data": {}}}, STORE) == [anonymous]
    assert volumes.mounts("d" * 64, {}, {"Volumes": {"/data": {}}}, STORE)[0].name != anonymous.name


@pytest.mark.parametrize("bind, message", [
    ("rel/path:/x", '"rel/path" includes invalid characters for a local volume name'),
    ("/tmp:x", "Invalid volume destination path: 'x' mount path must be absolute."),
    ("/tmp:/x:rx", "Invalid volume specification: '/tmp:/x:rx'"),
    ("/tmp", "Invalid volume specification: '/tmp'"),
])
def test_malformed_binds_are_refused_in_dockers_words(bind, message):
    with pytest.raises(APIError) as refused:
        volumes.mounts("", {"Binds": [bind]}, {}, STORE)
    assert refused.value.status == 400 and message in str(refused.value)


def test_the_volume_store(tmp_path):
    assert volumes.listing(tmp_path) == {"Volumes": None, "Warnings": None}
    assert volumes.create(tmp_path, "made")["Mountpoint"] == str(tmp_path / "made" / "_data")
    assert [v["Name"] for v in volumes.listing(tmp_path)["Volumes"]] == ["made"]
    with pytest.raises(APIError, match=r"remove made: volume is in use - \[abc\]"):
        volumes.remove(tmp_path, "made", ["abc"])
    with pytest.raises(APIError, match="get nosuch: no such volume"):
        volumes.find(tmp_path, "nosuch")
    assert volumes.prune(tmp_path, {"made"}) == {"VolumesDeleted": None, "SpaceReclaimed": 0}
    assert volumes.prune(tmp_path, set())["VolumesDeleted"] == ["made"] and not (tmp_path / "made").exists()
