"""Transcript parsing and step semantics (no root: a stand-in runner plays the cluster)."""

from dataclasses import dataclass

import pytest

from calisim.scenarios import transcript
from calisim.scenarios.transcript import Step, TranscriptError


def test_steps_expectations_retries_comments_and_continuations():
    steps = transcript.parse("""
# the seed
host1$ calicoctl node run --name 192.168.3.229
host2! calicoctl delete ipPool 1.2.3.0/24
within 20s host1$ calicoctl node status | \\
  grep Established
""")
    assert steps == [
        Step(3, "host1", "calicoctl node run --name 192.168.3.229", True),
        Step(4, "host2", "calicoctl delete ipPool 1.2.3.0/24", False),
        Step(5, "host1", "calicoctl node status | \\\n  grep Established", True, 20.0)]


def test_here_documents_take_their_lines():
    (step, after) = transcript.parse("host1$ cat > p.yaml <<EOF\n- kind: ipPool\n  x: 1\nEOF\nhost1$ ls\n")
    assert step.command == "cat > p.yaml <<EOF\n- kind: ipPool\n  x: 1\nEOF"
    assert after == Step(5, "host1", "ls", True)
    assert transcript.parse(step.prompt)[0].command == step.command  # a step prints back as itself


@pytest.mark.parametrize("text, message", [
    ("host1 ls", "line 1: expected 'HOST\\$ COMMAND'"),
    ("host1$", "line 1: expected"),
    ("\n# nothing\n", "no steps"),
    ("host1$ cat <<EOF\nunterminated", "without its terminator 'EOF'"),
    ("within 5m host1$ ls", "expected"),
])
def test_malformed_transcripts_are_rejected(text, message):
    with pytest.raises(TranscriptError, match=message):
        transcript.parse(text)


def test_an_empty_transcript_is_allowed_when_asked_for():
    assert transcript.parse("\n# explore by hand\n", allow_empty=True) == []


def test_unknown_hosts_are_rejected_before_anything_runs():
    with pytest.raises(TranscriptError, match="line 2: unknown host 'host9' \\(the topology has host1, host2\\)"):
        transcript.check_hosts(transcript.parse("host1$ ls\nhost9$ ls"), ["host1", "host2"])


@dataclass
class Result:
    rc: int
    stdout: str = ""
    stderr: str = ""


class ScriptedHosts:
    """Answers each run with the next exit code of a script, and records the calls."""

    def __init__(self, codes):
        self.codes = list(codes)
        self.calls = []

    def run(self, host, command, timeout=None):
        self.calls.append((host, command))
        return Result(self.codes.pop(0))


def test_within_retries_until_the_expectation_is_met(monkeypatch):
    monkeypatch.setattr(transcript, "RETRY_INTERVAL", 0.01)
    hosts = ScriptedHosts([1, 1, 0])
    result = transcript.run_step(hosts, Step(1, "host1", "check", True, within=5))
    assert result.passed and result.attempts == 3 and result.rc == 0


def test_within_gives_up_when_time_is_up(monkeypatch):
    monkeypatch.setattr(transcript, "RETRY_INTERVAL", 0.01)
    hosts = ScriptedHosts([1] * 1000)
    result = transcript.run_step(hosts, Step(1, "host1", "check", True, within=0.1))
    assert not result.passed and result.attempts > 1 and result.rc == 1


def test_failure_expected_and_stop_at_first_failed_step():
    hosts = ScriptedHosts([2, 0, 0])
    steps = transcript.parse("host1! false\nhost1! true\nhost1$ never")
    results = transcript.run(hosts, steps)
    assert [r.passed for r in results] == [True, False]
    assert len(hosts.calls) == 2
    assert results[0].as_dict() == {"host": "host1", "command": "false", "expect": "failure", "rc": 2,
                                    "stdout": "", "stderr": "", "passed": True, "seconds": results[0].seconds}
