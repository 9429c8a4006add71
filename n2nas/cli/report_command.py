"""``n2nas report``: the Pareto front of a run folder as a table; redraws its ``report.png``."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add ``n2nas report`` to the command tree."""
    p = sub.add_parser("report", help="Pareto front table of a run folder; redraws its report.png")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `n2nas search`")
    p.add_argument("--all", action="store_true", help="list every scored trial, not only the front")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from n2nas.searching.report import format_by_choice, format_table, load_trials, pareto_front, write_report

    png = write_report(args.run_dir)
    print(format_table(pareto_front(args.run_dir), show_all=args.all))
    per_leads = format_by_choice(load_trials(args.run_dir), "leads")  # 12-lead spaces only
    if per_leads:
        print(per_leads)
    print(f"plot: {png}")
    return 0
