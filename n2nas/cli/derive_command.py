"""``n2nas derive``: one more family member, for a new FLOPs budget, from a finished search's supernet."""
from __future__ import annotations

import argparse
import json

from n2nas.cli.options import number


def register(sub) -> None:
    """Add ``n2nas derive`` to the command tree."""
    p = sub.add_parser("derive", help="a model for a new FLOPs budget from a finished search, without training",
                       description="Search a finished run's trained supernet under a FLOPs limit (shared-weight "
                                   "scores only), write the winner with inherited weights (BatchNorm recalibrated; "
                                   "fine-tuned when the run's family is) as a model folder for `n2nas evaluate` / "
                                   "`n2nas export`, and add it to the run's family file (RUN/family/). Prints the "
                                   "member as one JSON object.")
    p.add_argument("run", metavar="RUN_DIR", help="a search's run folder (with checkpoint/ and split.json)")
    p.add_argument("--max-flops", type=number(float), required=True, metavar="FLOPS",
                   help="hard limit in FLOPs per 30 s record, every multi-crop window (e.g. 0.2e9)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write (must be empty)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="the data SPEC the run searched (default: the one the run recorded)")
    p.set_defaults(func=_cmd_derive)


def _cmd_derive(args: argparse.Namespace) -> int:
    from n2nas.searching.extend_family import derive_member

    print(json.dumps(derive_member(args.run, args.max_flops, args.out, data=args.data)))
    return 0
