"""Launched by tests as ``mpiexec -n 2 python -m mpi4py tests/mpi_rule_helper.py FOLDER CACHE RULE OUT``: rank 0
trains the ``ecg-res`` supernet for a few synchronous steps with RULE and saves its weights to OUT; the other
rank serves."""
from __future__ import annotations

import sys


def main() -> int:
    import torch

    from n2nas.runners import RunnerConfig, guarded
    from n2nas.runners.mpi import MpiRunner, serve_if_worker
    from tests.test_ecg_res_distributed import rule_setup

    folder, cache, rule, out = sys.argv[1:5]
    config = RunnerConfig(backend="mpi", workers=2)
    with guarded(config):
        if serve_if_worker(f"physionet2017:{folder}"):
            return 0
        space_def, ctx, shared, samples = rule_setup(folder, cache, rule)
        torch.manual_seed(0)
        runner = MpiRunner(config, space_def, ctx, shared, torch.device("cpu"), 0)
        stats = runner.train_shared(samples)
        torch.save({"weights": runner.replica.supernet.state_dict(), "failed": stats["shared_failed"]}, out)
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
