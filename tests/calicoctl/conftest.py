"""What the calicoctl tests share: calicoctl run in-process against a real etcd (``ctl``), and the
seed's pool."""

import pytest

from calisim import calicoctl

SEED_POOL = """\
- apiVersion: v1
  kind: ipPool
  metadata:
    cidr: 10.10.0.0/16
  spec:
    ipip:
      enabled: true
    nat-outgoing: true
"""


@pytest.fixture
def ctl(etcd, monkeypatch, capsys, tmp_path):
    """Run calicoctl in-process; returns (exit code, stdout + stderr)."""
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd)
    monkeypatch.setenv("CALICO_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)

    def run(*argv, stdin=None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", __import__("io").StringIO(stdin))
        try:
            calicoctl.main(list(argv))
            code = 0
        except SystemExit as exit:
            code = exit.code
        captured = capsys.readouterr()
        return code, captured.out + captured.err
    return run

