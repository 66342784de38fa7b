"""Fixtures of the CLI's bad-input tests: where nothing may be made, and a refusal's one line."""

import pytest

from calisim.cli import main


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """A private registry and run-directory base, to show that nothing was started or made."""
    monkeypatch.setenv("CALISIM_LABS", str(tmp_path / "labs"))
    monkeypatch.setenv("CALISIM_RUNS", str(tmp_path / "runs"))
    yield tmp_path
    assert not (tmp_path / "labs").exists() or not any((tmp_path / "labs").iterdir())
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.fixture
def refused(capsys):
    """Run the command line here; what it wrote on standard error, once it exited 2 with nothing on standard output."""
    def run(*args: str) -> str:
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        out, err = capsys.readouterr()
        assert (exited.value.code, out) == (2, ""), err
        assert err.count("\n") == 1 and err.startswith("calisim: ")
        return err
    return run
