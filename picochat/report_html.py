"""The run report's page: numbers written for people, and the layout (`Document`) rendered once as Markdown
and once as a self-contained HTML page with one inline stylesheet (picochat/report.py fills it in).
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from matplotlib.figure import Figure

from picochat.atomic import atomic_write_bytes, atomic_write_text

# --- numbers for people: what a cell shows; report.json keeps the full values ----------------------------

SI_PREFIXES = ("", "k", "M", "G", "T", "P", "E")


def significant(x: float, digits: int = 4) -> str:
    """`x` to `digits` significant digits with thousands separators, trailing zeros dropped:
    0.44068 -> 0.4407, 12345.6 -> 12,350, 75.09 -> 75.09, 2.50 -> 2.5; below 10⁻⁴ in e-notation."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    exponent = math.floor(math.log10(abs(x)))
    if exponent < -4:
        mantissa, _, power = f"{x:.{digits - 1}e}".partition("e")
        return mantissa.rstrip("0").rstrip(".") + "e" + power
    decimals = digits - 1 - exponent  # < 0: rounds to tens, hundreds, ...
    # half up, as people round (31.25 -> 31.3; Python's round gives 31.2)
    rounded = Decimal(repr(x)).quantize(Decimal(f"1e{-decimals}"), rounding=ROUND_HALF_UP)
    text = f"{rounded:,.{max(decimals, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(seconds: float) -> str:
    """Minutes and seconds, m:ss (h:mm:ss from an hour on); under a minute, seconds:
    75.3 -> 1:15, 7.25 -> 7.25 s."""
    if seconds < 60:
        return f"{significant(seconds, 3)} s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def si(x: float, unit: str = "") -> str:
    """An SI prefix for every factor of 1,000: 8.4139e12 FLOP -> 8.414 TFLOP, 1234 -> 1.234 k."""
    power = min(max(math.floor(math.log10(abs(x)) / 3), 0), len(SI_PREFIXES) - 1) if x else 0
    return f"{significant(x / 1000**power)} {SI_PREFIXES[power]}{unit}".rstrip()


def percent(fraction: float) -> str:
    """A fraction as a percentage, 3 significant digits: 0.3125 -> 31.3%."""
    return f"{significant(100 * fraction, 3)}%"


def signed(x: float) -> str:
    """With its sign, as a centred accuracy or a change is read: 0.0267 -> +0.0267, -0.0084 -> -0.0084."""
    return ("+" if x > 0 else "") + significant(x)


def plus_minus(value: float, error: float) -> str:
    """value ± error, the error to 2 significant digits, the value to the same decimals: +0.087 ± 0.014."""
    if not error or not math.isfinite(error):
        return f"{signed(value)} ± 0"
    decimals = max(1 - math.floor(math.log10(abs(error))), 0)
    return f"{value:+.{decimals}f} ± {error:.{decimals}f}"


def people(value) -> str:
    """Any value as a table shows it: integers whole, floats to 4 significant digits, nothing as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return significant(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(people(v) for v in value)
    return str(value)


# --- the summary card ------------------------------------------------------------------------------------

PROBE_RULES = {  # docs/probes.md: 50 held-out prompts a skill, asked greedily
    "identity": 'the reply contains "picochat"',
    "arithmetic": "a calculator call in the reply evaluates to the answer",
    "spelling": "the reply spells the word letter by letter (words SFT practises)",
    "spelling_unseen": "the same, for words no task ever spells",
}


def card_rows(facts: dict) -> list[tuple[str, str, str, str | None]]:
    """The summary card: (figure, value, the rule that says what it means, its path in report.json)."""
    rows = []
    if m := facts["model"]:
        shape = f"depth {m['depth']}, width {m['width']}, {m['heads']} heads, context {m['context']:,} tokens"
        shape += f"; BPE tokenizer of {m['vocab_size']:,} tokens"
        rows.append(("model", f"{si(m['parameters'])} parameters", shape, "model.parameters"))
    cost = facts["cost"]
    if cost["total_seconds"] is not None:
        stages = ", ".join(f"{name} {duration(s)}" for name, s in cost["wall_seconds"].items())
        rows.append(
            ("wall time of 'picochat run'", duration(cost["total_seconds"]), stages, "cost.total_seconds")
        )
    for name, c in cost["stages"].items():
        if c["flops"] is not None:
            spent = f"{si(c['tokens'])} tokens; {duration(c['training_seconds'] or 0.0)} of optimizer steps"
            flops = si(c["flops"], "FLOP")
            rows.append((f"{c['title']} compute", flops, spent, f"cost.stages.{name}.flops"))
    machine = cost["machine"]
    where = machine.get("cpu") or "–"
    if machine.get("gpu"):
        where = f"{machine.get('gpus') or 1} × {machine['gpu']}"
    rows.append(("machine", where, f"{machine.get('device', '–')}, {machine.get('dtype', '–')}", None))
    return rows + result_rows(facts["results"])


def result_rows(results: dict) -> list[tuple[str, str, str, str | None]]:
    rows = []
    if bpb := results["val_bpb"]:
        rule = "the base model's validation loss in bits per byte of text: lower is better, any tokenizer"
        rows.append(("validation bits per byte", significant(bpb["value"]), rule, "results.val_bpb.value"))
    if core := results["core"]:
        rule = f"mean centred accuracy of the base model over {core['tasks']} tasks: 0 is chance, 1 all right"
        rows.append(("CORE", signed(core["value"]), rule, "results.core.value"))
    for skill, p in results["chat_probes"].items():
        value = f"{percent(p['rate'])} ({p['passed']}/{p['asked']})"
        rule = PROBE_RULES.get(skill, "passed / asked")
        rows.append((f"chat probe: {skill}", value, rule, f"results.chat_probes.{skill}.rate"))
    rl = results["rl"]
    if rl and rl["gain"] is not None:
        rule = (
            f"RL's held-out greedy pass@1 {percent(rl['before'])} → {percent(rl['after'])} on the same "
            f"{rl['problems']:,} problems; ± one paired standard error"
        )
        rows.append(("RL held-out gain", plus_minus(rl["gain"], rl["gain_stderr"]), rule, "results.rl.gain"))
    for task, t in results["chat_suite"].items():
        rule = (
            f"chat model, {t['n']:,} problems; chance {percent(t['chance'])}, centred {signed(t['centered'])}"
        )
        rows.append(
            (f"chat suite: {task}", percent(t["accuracy"]), rule, f"results.chat_suite.{task}.accuracy")
        )
    return rows


# --- the layout ------------------------------------------------------------------------------------------


NUMBER = re.compile(r"[+-]?[\d,.]+(e[+-]\d+)?( ?[kMGTPE]?FLOP| [kMGTPE]|%| s| pp)?|\d+(:\d\d){1,2}")


def is_number(text: str) -> bool:
    """A cell that holds one number (right-aligned, so that digits line up)."""
    return bool(NUMBER.fullmatch(text))


class Document:
    """The report as Markdown and, block for block, as one self-contained HTML page (images inlined)."""

    def __init__(self):
        self.markdown: list[str] = []
        self.html: list[str] = []
        self.images: list[Path] = []

    def add(self, markdown: str, html_text: str) -> None:
        self.markdown.append(markdown)
        self.html.append(html_text)

    def heading(self, text: str, level: int = 2) -> None:
        self.add("#" * level + " " + text, f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.add(text, f"<p>{html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list], keys: list[str | None] | None = None) -> None:
        """Cells through `people` (a str is shown as it is); `keys`: per row, the report.json path of its
        second cell, which the page marks (data-json) so that a reader or a test can find the full value."""
        if not rows:
            return
        rows = [[people(v) for v in row] for row in rows]
        escaped = [[v.replace("|", "\\|").replace("\n", " ") for v in line] for line in [header, *rows]]
        markdown = ["| " + " | ".join(line) + " |" for line in escaped]
        markdown.insert(1, "|" + "---|" * len(header))
        cells = ["".join(f"<th>{html.escape(v)}</th>" for v in header)]
        for row, key in zip(rows, keys or [None] * len(rows)):
            tags = [f"<td{' class=num' if is_number(v) else ''}>" for v in row]
            if key and len(tags) > 1:
                tags[1] = tags[1][:-1] + f" data-json='{html.escape(key)}'>"
            cells.append("".join(f"{tag}{html.escape(v)}</td>" for tag, v in zip(tags, row)))
        body = "".join(f"<tr>{row}</tr>" for row in cells)
        self.add("\n".join(markdown), f"<div class=scroll><table>{body}</table></div>")

    def card(self, title: str, rows: list[tuple[str, str, str, str | None]]) -> None:
        """The summary: (figure, value, its rule, report.json path) rows, boxed on the page."""
        self.add("", "<section class=card id=summary>")
        self.heading(title)
        self.table(["", "value", "rule"], [row[:3] for row in rows], keys=[row[3] for row in rows])
        self.add("", "</section>")

    def image(self, path: Path, alt: str) -> None:
        self.images.append(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.add(
            f"![{alt}]({path.name})",
            f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></p>",
        )

    def quote(self, who: str, text: str) -> None:
        text = text.strip() or "(empty)"
        self.add(
            f"**{who}:** " + text.replace("\n", "  \n"),
            f"<p><b>{html.escape(who)}:</b> " + html.escape(text).replace("\n", "<br>") + "</p>",
        )

    def write(self, reports: Path, html_too: bool) -> list[Path]:
        written = [reports / "report.md", *self.images]
        atomic_write_text(written[0], "\n\n".join(m for m in self.markdown if m) + "\n")
        if html_too:
            written.append(reports / "report.html")
            page = [
                f"<!doctype html><html lang=en><head>{HTML_HEAD}</head><body>",
                *self.html,
                "</body></html>",
            ]
            atomic_write_text(written[-1], "\n".join(page) + "\n")
        return written


# One column of text about 46 characters wide on a phone and 75 on a laptop; a wide table scrolls inside
# its own box, so the page never scrolls sideways; plots are drawn at the column's width (report.py).
STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;max-width:46rem;
  margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
h3{font-size:1.05rem}p{overflow-wrap:anywhere}td{overflow-wrap:break-word}
.scroll{overflow-x:auto;margin:.75rem 0}
table{border-collapse:collapse;font-size:.9rem}
td,th{border-bottom:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.card{background:#f6f8fa;border:1px solid #d0d7de;border-radius:8px;padding:0 1rem .5rem}
.card h2{border:0;margin-top:1rem}.card td.num{text-align:left}
.card td:nth-child(2){font-weight:600;white-space:nowrap}.card td:nth-child(3){color:#57606a;font-size:.85rem}
img{max-width:100%;height:auto}
@media (max-width:600px){body{font-size:15px;padding:.6rem}td,th{padding:.2rem .35rem}
  .card tr:first-child{display:none}.card tr{display:block;border-bottom:1px solid #d0d7de;padding:.3rem 0}
  .card td{display:inline;border:0;padding:0 .4rem 0 0}.card td:nth-child(3){display:block}}
"""
HTML_HEAD = (
    "<meta charset='utf-8'><meta name='viewport' content='width=device-width,initial-scale=1'>"
    f"<title>picochat run report</title><style>{STYLE.strip()}</style>"
)


# --- plots ----------------------------------------------------------------------------------------------

PANELS = [  # (record key, axis label, from training records (True) or evaluation records (False))
    ("loss", "training loss (nats/token)", True),
    ("val_bpb", "validation bits per byte", False),
    ("lr_factor", "learning-rate multiplier", True),
    ("tokens_per_s", "tokens/s", True),
    ("mfu", "MFU (%)", True),
    ("reward_mean", "mean reward", True),  # RL
    ("pass_at_1", "pass@1 (sampled)", True),
    ("kl", "KL to the start", True),
    ("completion_len", "reply length (tokens)", True),
]


RL_PANELS = ("reward_mean", "pass_at_1", "kl", "completion_len")  # RL's loss is a surrogate, near 0: left out


def stage_panels(run) -> list[tuple[str, str, bool]]:
    found = [panel for panel in PANELS if any(panel[0] in r for r in (run.steps if panel[2] else run.evals))]
    rl = [panel for panel in found if panel[0] in RL_PANELS]
    return rl or found


def plot_stage(run, out: Path) -> Path | None:
    """One PNG for a stage (a report.StageRecords) at the page's text width: a panel per metric against
    steps, two panels a row; evaluations drawn as points."""
    panels = stage_panels(run)
    if not panels:
        return None
    rows = math.ceil(len(panels) / 2)
    fig = Figure(figsize=(7.2, 0.4 + 1.7 * rows))
    axes = fig.subplots(rows, 2, squeeze=False).flatten()
    for ax, (key, label, train) in zip(axes, panels):
        records = [r for r in (run.steps if train else run.evals) if r.get(key) is not None]
        values = [r[key] * (100.0 if key == "mfu" else 1.0) for r in records]
        style = dict(lw=0.9) if train else dict(marker="o", ms=3, lw=1.2)
        ax.plot([r["step"] for r in records], values, **style)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[-2:]:
        ax.set_xlabel("step", fontsize=8)
    fig.subplots_adjust(
        left=0.08,
        right=0.98,
        top=1 - 0.3 / fig.get_figheight(),
        bottom=0.45 / fig.get_figheight(),
        hspace=0.55,
        wspace=0.22,
    )
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    atomic_write_bytes(out, png.getvalue())
    return out
