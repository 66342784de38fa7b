"""A lab's own process: what `calisim up` starts in the lab's sandbox.

Here, beside the CLI, rather than in calisim.emulation.lab: it hands the lab its topology (from
`topologies`) and the runner of `calisim fault` command lines (calisim.cli.fault), both of which
sit above the emulation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import topologies

from ..emulation import lab, sandbox
from .fault import run_command


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m calisim.cli.lab_process",
                                     description="a lab's own process (started by `calisim up` in its sandbox)")
    parser.add_argument("spec", type=json.loads)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("status_fd", type=int)
    args = parser.parse_args()
    sandbox.require()
    sandbox.take_machine_netns()
    spec = lab.LabSpec(**args.spec)
    topo = topologies.load(spec.topology, **spec.options)
    sys.exit(lab.run_lab(spec, topo, run_command, args.run_dir, args.status_fd))


if __name__ == "__main__":
    main()
