"""The etcd client after an outage: a restarted etcd is answered at once, not when gRPC's
reconnect backoff (grown through the outage to seconds) next lets the channel try.  A new
client in the same process shares that backoff (gRPC pools connections by target), so without
the client's backoff options even etcd's own readiness probe waits it out."""

import time

import pytest

from calisim.datastore import Datastore, DatastoreError, Synchronous, local_etcd

pytestmark = pytest.mark.emulation

OUTAGE = 10.0  # seconds of refused requests: gRPC's default backoff has grown to ~4-6 s by then
ANSWERED_WITHIN = 2.5  # seconds from etcd's start to the old client's answer (~0.5 s here; ~5 s with gRPC's defaults)


def test_a_restarted_etcd_answers_the_first_request_after_an_outage(tmp_path):
    directory = tmp_path / "etcd"
    with local_etcd(directory) as endpoint:
        client = Synchronous(Datastore(endpoint))
        client.put("/calico/v1/config/Probe", "before")
    try:
        down = time.monotonic()
        while time.monotonic() - down < OUTAGE:
            with pytest.raises(DatastoreError, match="etcd cluster is unavailable"):
                client.get("/calico/v1/config/Probe")
        starting = time.monotonic()
        with local_etcd(directory):
            assert client.value("/calico/v1/config/Probe") == "before"
            answered = time.monotonic() - starting
        assert answered < ANSWERED_WITHIN, f"answered {answered:.1f} s after etcd was started"
    finally:
        client.close()
