"""IPv6 on the seed's two hosts: their IPv6 addresses, the default IPv6 pool, `calicoctl node run
--ip6`, the IPv6 mesh in BIRD (an ipv6 channel, Calico's names) and the IPv6 table of node status.
One cluster for the module; the steps run in order."""

import shutil
import tempfile
from pathlib import Path

import pytest

import topologies
from calisim.emulation import Cluster

from .conftest import replay

pytestmark = pytest.mark.emulation


@pytest.fixture(scope="module")
def cluster():
    base = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALISIM_RUNS", str(base / "runs"))
        with Cluster(topologies.load("two_host")) as running:
            yield running
    shutil.rmtree(base)


BAD_IP6 = """\
host1$ ip -6 -o addr show scope global | grep -q 'inet6 fd00:3::229/64'
host2$ ping -6 -c 1 -W 5 fd00:3::229 | grep -q '1 received'
host1! calicoctl node run --name 192.168.3.229 --ip6 192.168.3.229
host1$ calicoctl node run --name 192.168.3.229 --ip6 192.168.3.229 | grep -x 'Error executing command: --ip6 is wrong IP version'
host1$ calicoctl node run --name 192.168.3.229 --ip6 fd00:3::99 | grep -x "Calico node failed to start: Unable to confirm IPv6 address fd00:3::99 is assigned to this host"
host1$ etcdctl --endpoints "$ETCD_ENDPOINTS" get --prefix /calico --keys-only | grep -c . | grep -x 0
"""


def test_a_wrong_ip6_is_refused_with_calicos_words_and_stores_nothing(cluster):
    replay(cluster, BAD_IP6)


MESH = """\
host1$ calicoctl node run --name 192.168.3.229 --ip6 fd00:3::229 | grep -x 'Using IPv6 address fd00:3::229/128'
host2$ calicoctl node run --name 192.168.3.228 --ip6 autodetect | grep -x 'Autodetected IPv6 address fd00:3::228/64'
host1$ calicoctl get ipPool | grep -x 'fd80:24e2:f998:72d6::/64 *'
host1$ calicoctl get node -o wide | grep -E '^192\\.168\\.3\\.228 +\\(64512\\) +192\\.168\\.3\\.228/24 +fd00:3::228/64 +$'
within 40s host1$ calicoctl node status | grep -E '^\\| fd00:3::228 +\\| node-to-node mesh \\| up +\\| [0-9:]+ +\\| Established +\\|$'
within 40s host2$ calicoctl node status | grep -E '^\\| fd00:3::229 +\\| node-to-node mesh \\| up +\\| [0-9:]+ +\\| Established +\\|$'
host1$ calicoctl node status
host1$ birdc -s /var/run/calico/bird.ctl show protocols Mesh_fd00_3__228 | grep -E 'Mesh_fd00_3__228 +BGP +--- +up'
host1$ sysctl -n net.ipv6.conf.all.forwarding | grep -x 1
"""


def test_ipv6_mesh_comes_up_beside_the_ipv4_one(cluster):
    results = replay(cluster, MESH)
    status = next(r.stdout for r in results if r.step.command == "calicoctl node status")
    v4, v6 = status.split("IPv6 BGP status\n")
    assert "| 192.168.3.228 | node-to-node mesh | up    |" in v4 and "fd00" not in v4
    header = "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |"
    assert v6.splitlines()[1] == header and v6.splitlines()[3].startswith("| fd00:3::228  | node-to-node mesh | up    |")
