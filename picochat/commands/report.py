"""`picochat report`: $PICOCHAT_HOME/reports/report.md and report.json, plot_<stage>.png beside them
(--html: report.html)."""

from dataclasses import dataclass

from picochat.settings import add_command, setting

HELP = "Write the run report: the summary first, then every stage that ran, with plots."


@dataclass
class ReportOptions:
    html: bool = setting(False, "also write report.html with the plots inlined")
    samples: bool = setting(True, "load the chat model to write sample conversations (else run.json's)")


def add_parser(subparsers) -> None:
    add_command(subparsers, "report", run, ReportOptions, HELP)


def run(options: ReportOptions, args) -> None:
    from picochat.report import write_report

    for path in write_report(html_too=options.html, samples=options.samples):
        print(f"wrote {path}")
