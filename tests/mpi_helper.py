"""Launched by tests as ``mpiexec -n 2 python -m mpi4py tests/mpi_helper.py SPEC OUT MODE RESUME FAIL_RANK FAIL_AFTER``:
a tiny MPI search on every rank, where rank FAIL_RANK raises in its shared-weight step FAIL_AFTER + 1 (-1: never)."""
from __future__ import annotations

import json
import sys


def main() -> int:
    from mpi4py import MPI

    import n2nas
    from n2nas.runners import RunnerConfig, guarded
    from n2nas.runners.local import LocalRunner
    from tests.test_search import tiny_config

    spec, out, mode, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "resume"
    fail_rank, fail_after = int(sys.argv[5]), int(sys.argv[6])
    if MPI.COMM_WORLD.Get_rank() == fail_rank and fail_after >= 0:
        original, calls = LocalRunner.child_gradient, []

        def failing(self, sample, rule=None):
            calls.append(1)
            if len(calls) > fail_after:
                raise RuntimeError(f"injected failure on rank {fail_rank}")
            return original(self, sample, rule)

        LocalRunner.child_gradient = failing
    runner = RunnerConfig(backend="mpi", workers=MPI.COMM_WORLD.Get_size(), mpi_mode=mode, weighting=2.0)
    config = tiny_config(budget_epochs=3, shared_steps=4, children_per_step=2, derive_children=2, runner=runner)
    with guarded(runner):
        result = n2nas.search(spec, config, out=out, resume=resume)
    if result is not None:
        print(json.dumps({"run_dir": str(result.run_dir), "trials": len(result.trials)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
