"""`calisim chaos`'s bad input: one line, exit 2, before any lab is started."""

import pytest

from tests.conftest import calisim


@pytest.mark.parametrize("argv, says", [
    (["--kinds", "link,meteor"], "calisim: --kinds: unknown fault kind 'meteor' (known: link, loss, partition, "
                                 "bird, calico-node, etcd)"),
    (["--duration", "0"], "calisim: --duration must be more than 0 seconds, not '0'"),
    (["--duration", "forever"], "calisim: --duration must be a number of seconds (120, 120s, 2m), not 'forever'"),
    (["--seed", "lucky"], "calisim: --seed must be a whole number, not 'lucky'"),
    (["--every", "0"], "calisim: --every must be more than 0 seconds, not '0'"),
    (["--png", "/no/such/dir/t.png"], "calisim: --png must name a .png file in an existing directory"),
    (["--etcd-members", "2"], "calisim: --etcd-members 2: etcd wants an odd number of members"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_started(tmp_path, argv, says):
    done = calisim("chaos", "--topology", "two_host", *argv, env={"CALISIM_LABS": str(tmp_path / "labs"),
                                                                  "CALISIM_RUNS": str(tmp_path / "runs"),
                                                                  "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(says) and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "labs").exists() and not (tmp_path / "runs").exists()


def test_a_lab_that_is_not_running_is_one_line(tmp_path):
    done = calisim("chaos", "--lab", "nowhere", env={"CALISIM_LABS": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert (done.returncode, done.stderr) == (2, "calisim: no lab named 'nowhere' is running (no lab is running)\n")


def test_no_lab_at_all_says_how_to_have_one(tmp_path):
    done = calisim("chaos", env={"CALISIM_LABS": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert (done.returncode, done.stderr) == (2, "calisim: no lab is running: `calisim up TOPOLOGY --start-nodes` "
                                                 "first, or `calisim chaos --topology TOPOLOGY` for a lab of the "
                                                 "run's own\n")


def test_help_lists_the_kinds_and_how_to_replay():
    text = " ".join(calisim("chaos", "--help").stdout.split())
    assert "partition the host cut off in the underlay, then healed" in text
    assert "the same seed replays the same schedule" in text
