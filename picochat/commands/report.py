"""`picochat report`: Write the run report with tables and plots.

picochat report                # $PICOCHAT_HOME/reports/report.md and plot_<stage>.png beside it
picochat report --html         # also report.html, one self-contained file (plots inlined)
"""

HELP = "Write the run report: tables and plots of every stage that ran."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help=HELP, description=HELP)
    parser.add_argument("--html", action="store_true", help="also write report.html with the plots inlined")
    parser.add_argument(
        "--no-samples",
        action="store_true",
        help="do not load the chat model to write sample conversations (use run.json's, if any)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.report import write_report

    written = write_report(html_too=args.html, samples=not args.no_samples)
    for path in written:
        print(f"wrote {path}")
    return 0
