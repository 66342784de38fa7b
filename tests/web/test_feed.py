"""The feed without a lab: every listener gets the state once, a new one gets the latest at
once, an unchanged lab publishes nothing, and a lab that is gone is said to be down."""

import asyncio

from calisim.emulation.lab import LabError, LabRecord
from calisim.web.feed import LabFeed


def record(pid: int = 1) -> LabRecord:
    return LabRecord("duo", "two_host", {}, [], 0.0, "/nonexistent", pid, 0)


class ScriptedFeed(LabFeed):
    """A feed whose lab answers from a list (a LabError to raise, or an inspect document)."""

    def __init__(self, answers: list):
        super().__init__(record(pid=2 ** 22 + 1), lambda document: {"seen": document["n"]})
        self.answers = answers

    async def inspect(self) -> dict:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def drain(queue) -> list:
    found = []
    while not queue.empty():
        found.append(queue.get_nowait())
    return found


def test_changes_are_published_once_to_every_listener_and_a_dead_lab_is_down():
    async def scenario() -> tuple[list, list]:
        feed = ScriptedFeed([{"n": 1}, {"n": 1}, {"n": 2}, LabError("cannot reach the lab"), {"n": 2}])
        first = feed.subscribe()
        await feed.poll_once()
        await feed.poll_once()  # the same document: nothing new
        second = feed.subscribe()  # told the latest state at once
        await feed.poll_once()
        assert await feed.poll_once() > 0.5  # a lab that does not answer is asked less often
        await feed.poll_once()  # it answers again: the state again
        return drain(first), drain(second)

    first, second = asyncio.run(scenario())
    assert first == [("viewers", 1), ("state", {"seen": 1}), ("viewers", 2), ("state", {"seen": 2}),
                     ("down", "lab duo is down"), ("state", {"seen": 2})]
    assert second == [("state", {"seen": 1}), ("viewers", 2), ("state", {"seen": 2}), ("down", "lab duo is down"),
                      ("state", {"seen": 2})]
