"""The run report (`picochat report [--html] [--no-samples]`): what each training stage did, in tables and
plots, from the files the run left on disk (docs/report.md lists them).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import platform
import statistics
import subprocess
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

import torch
from matplotlib.figure import Figure

from picochat.atomic import atomic_write_bytes, atomic_write_text
from picochat.checkpoint import CheckpointMeta, latest_checkpoint, load_model, read_meta
from picochat.engine import Engine, SamplingParams
from picochat.errors import UserError
from picochat.evaluation.probes import examples
from picochat.model import GPT, GPTConfig
from picochat.paths import picochat_home
from picochat.runtime import compute_dtype, pick_device

STAGES = {"base": "pretraining", "sft": "SFT", "rl": "RL"}  # run-directory name -> title
SAMPLE_PROMPTS = ("Who are you?", "What is 12 + 30?", "Spell the word apple.", "Tell me about the sun.")


@dataclass
class StageRecords:
    name: str  # the run directory's name: base, sft or rl
    run_dir: Path
    steps: list[dict] = field(default_factory=list)  # training records, by step
    evals: list[dict] = field(default_factory=list)  # validation records (val_* keys), by step
    checkpoint: Path | None = None  # the latest complete checkpoint
    meta: CheckpointMeta | None = None  # its meta

    @property
    def title(self) -> str:
        return STAGES.get(self.name, self.name)

    def training_seconds(self, steps: list[int]) -> list[float]:
        """Training seconds when each of `steps` had been completed: the running sum of step times."""
        done = [record["step"] for record in self.steps]
        elapsed = list(accumulate(float(record.get("step_time_s") or 0.0) for record in self.steps))
        return [elapsed[i - 1] if (i := bisect_right(done, step)) else 0.0 for step in steps]


def parse_json(text: str) -> dict | None:
    """A JSON object, or None for anything else (a line cut short by a kill, say)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_json(path: Path) -> dict | None:
    return parse_json(path.read_text()) if path.is_file() else None


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """(training, evaluation records) of a metrics.jsonl by step; an evaluation has val_* keys and no loss."""
    lines = path.read_text().splitlines() if path.is_file() else []
    records = sorted((r for r in map(parse_json, lines) if r and "step" in r), key=lambda r: r["step"])
    evaluation = [any(key.startswith("val_") for key in r) and "loss" not in r for r in records]
    steps = [r for r, is_eval in zip(records, evaluation) if not is_eval]
    return steps, [r for r, is_eval in zip(records, evaluation) if is_eval]


def read_stage(name: str, run_dir: Path) -> StageRecords | None:
    steps, evals = read_metrics(Path(run_dir) / "metrics.jsonl")
    checkpoint = latest_checkpoint(run_dir, quiet=True)
    meta = read_meta(checkpoint) if checkpoint else None
    if not steps and not evals and meta is None:
        return None
    return StageRecords(name, Path(run_dir), steps, evals, checkpoint, meta)


def read_evals(reports: Path) -> list[dict]:
    found = [read_json(path) for path in sorted(Path(reports).glob("eval_*_*.json"))]
    return [e for e in found if e and isinstance(e.get("tasks"), dict)]


def trained_tokens(run: StageRecords) -> int | None:
    if run.steps and run.steps[-1].get("tokens") is not None:
        return int(run.steps[-1]["tokens"])
    per_step = run.meta.fingerprint.get("tokens_per_step") if run.meta else None
    return int(per_step) * run.meta.step if per_step else None


def median(records: list[dict], key: str, scale: float = 1.0) -> float | None:
    values = [float(r[key]) * scale for r in records if r.get(key) is not None]
    return statistics.median(values) if values else None


def git_commit(directory: Path | None = None) -> str | None:
    """The commit of the code (with "+changes" when the work tree differs), or None outside a git checkout."""
    directory = directory or Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=10)

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """The machine this process runs on: what `picochat run` records in run.json and the report shows."""
    device = pick_device()
    cuda = torch.cuda.is_available()
    return {
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpus": torch.cuda.device_count() if cuda else 0,
        "device": device.type,
        "dtype": str(compute_dtype(device)).removeprefix("torch."),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "os": platform.platform(),
        "git_commit": git_commit(),
    }


PANELS = [  # (record key, axis label, from training records (True) or evaluation records (False))
    ("loss", "training loss (nats/token)", True),
    ("val_bpb", "validation bits per byte", False),
    ("lr_factor", "learning-rate multiplier", True),
    ("tokens_per_s", "tokens/s", True),
    ("mfu", "MFU (%)", True),
    ("reward_mean", "mean reward", True),  # RL
    ("pass_at_1", "pass@1", True),
    ("kl", "KL to the reference", True),
]


def stage_panels(run: StageRecords) -> list[tuple[str, str, bool]]:
    return [panel for panel in PANELS if any(panel[0] in r for r in (run.steps if panel[2] else run.evals))]


def plot_stage(run: StageRecords, out: Path) -> Path | None:
    """One PNG for a stage: each metric (rows) against steps and against training seconds (columns)."""
    panels = stage_panels(run)
    if not panels:
        return None
    fig = Figure(figsize=(11, 2.6 * len(panels)))
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for row, (key, label, train) in enumerate(panels):
        records = [r for r in (run.steps if train else run.evals) if r.get(key) is not None]
        values = [r[key] * (100.0 if key == "mfu" else 1.0) for r in records]
        steps = [r["step"] for r in records]
        style = dict(lw=0.9) if train else dict(marker="o", lw=1.2)
        for ax, xs, xlabel in zip(axes[row], (steps, run.training_seconds(steps)), ("step", "training (s)")):
            ax.plot(xs, values, **style)
            ax.set(xlabel=xlabel, ylabel=label)
            ax.grid(alpha=0.3)
    fig.suptitle(f"{run.title} ({run.run_dir.name})")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    atomic_write_bytes(out, png.getvalue())
    return out


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.5g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def verbatim(value):
    """A setting as a configuration writes it: an integer without thousands separators (a seed of 1337)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def flatten(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def stage_configuration(meta: CheckpointMeta) -> dict:
    """The settings a checkpoint records, flat; a value recorded twice under one name is shown once."""
    skip = {"step", "model_config", "loaders", "last_eval"}
    recorded = {k: v for k, v in vars(meta).items() if k not in skip and v is not None}
    rows, seen = {}, {}  # seen: leaf name -> its first value
    for key, value in flatten(recorded).items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf not in seen or seen[leaf] != value:
            rows[key] = value
        seen.setdefault(leaf, value)
    return rows


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

    def table(self, header: list[str], rows: list[list]) -> None:
        if not rows:
            return
        rows = [[fmt(v) for v in row] for row in rows]
        escaped = [[v.replace("|", "\\|").replace("\n", " ") for v in line] for line in [header, *rows]]
        markdown = ["| " + " | ".join(line) + " |" for line in escaped]
        markdown.insert(1, "|" + "---|" * len(header))
        cells = ["".join(f"<th>{html.escape(v)}</th>" for v in header)]
        cells += ["".join(f"<td>{html.escape(v)}</td>" for v in row) for row in rows]
        self.add("\n".join(markdown), "<table>" + "".join(f"<tr>{row}</tr>" for row in cells) + "</table>")

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
        atomic_write_text(written[0], "\n\n".join(self.markdown) + "\n")
        if html_too:
            written.append(reports / "report.html")
            page = [f"<!doctype html><html><head>{HTML_HEAD}</head><body>", *self.html, "</body></html>"]
            atomic_write_text(written[-1], "\n".join(page) + "\n")
        return written


HTML_HEAD = (
    "<meta charset='utf-8'><title>picochat run report</title><style>body{font-family:sans-serif;"
    "max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}</style>"
)


def build_report(home: Path, samples: bool = True) -> tuple[Document, list[StageRecords]]:
    home = Path(home)
    reports = home / "reports"
    runs = [run for name in STAGES if (run := read_stage(name, home / "checkpoints" / name))]
    run_summary = read_json(reports / "run.json") or {}
    evals = read_evals(reports)

    doc = Document()
    doc.heading("picochat run report", 1)
    if not runs and not evals and not run_summary:
        doc.paragraph(f"Nothing has run under {home} yet: 'picochat run' trains a model end to end.")
        return doc, runs
    doc.paragraph(f"Stages that ran: {', '.join(f'{r.title} ({r.name})' for r in runs) or 'none'}.")
    add_machine(doc, run_summary.get("machine"))
    add_stage_table(doc, runs)
    add_run_times(doc, run_summary)
    add_evaluations(doc, runs, evals, run_summary.get("chat_probes"))
    for run in runs:
        add_stage(doc, run, reports / f"plot_{run.name}.png")
    add_samples(doc, runs, run_summary, samples)
    return doc, runs


def add_machine(doc: Document, recorded: dict | None) -> None:
    doc.heading("Machine")
    own = "The machine that wrote this report (the run did not record its own)."
    doc.paragraph("As recorded by 'picochat run'." if recorded else own)
    doc.table(["", "value"], [[key, value] for key, value in (recorded or machine_info()).items()])


STAGE_COLUMNS = ["stage", "step", "of steps", "parameters", "without embedding", "tokens", "FLOPs/token"]
STAGE_COLUMNS += ["training FLOPs", "training seconds", "tokens/s", "MFU %", "val bpb"]


def stage_row(run: StageRecords) -> list:
    meta = run.meta
    try:  # on the meta device, so nothing is allocated
        with torch.device("meta"):
            model = GPT(GPTConfig(**meta.model_config)) if meta and meta.model_config else None
    except (TypeError, ValueError):  # a config from another version of picochat: no sizes
        model = None
    tokens = trained_tokens(run)
    per_token = model.flops_per_token() if model else None
    return [
        run.name,
        meta.step if meta else (run.steps[-1]["step"] if run.steps else None),
        meta.total_steps if meta else None,
        model.num_params() if model else None,
        model.num_params(include_embedding=False) if model else None,
        tokens,
        per_token,
        per_token * tokens if per_token and tokens is not None else None,
        sum(float(r.get("step_time_s") or 0.0) for r in run.steps) if run.steps else None,
        median(run.steps[1:], "tokens_per_s"),
        median(run.steps[1:], "mfu", scale=100.0),
        meta.last_eval.get("bpb") if meta else None,
    ]


def add_stage_table(doc: Document, runs: list[StageRecords]) -> None:
    if not runs:
        return
    doc.heading("Stages")
    doc.table(STAGE_COLUMNS, [stage_row(run) for run in runs])
    doc.paragraph(
        "FLOPs/token is the model's training cost per token, 6·N + 6·L·H·D·T (forward and backward; "
        "N the parameters without the embedding); training FLOPs = FLOPs/token × tokens. Training seconds "
        "is the sum of step times (evaluations and checkpoints excluded). Tokens/s and MFU are medians over "
        "the steps after the first (which pays for compilation and warm caches)."
    )


def add_run_times(doc: Document, run_summary: dict) -> None:
    timings = run_summary.get("stage_seconds")
    if timings:
        doc.heading("Wall time of 'picochat run'")
        rows = [[stage, seconds] for stage, seconds in timings.items()]
        doc.table(["stage", "seconds"], [*rows, ["total", run_summary.get("total_seconds")]])


def add_evaluations(doc: Document, runs: list[StageRecords], evals: list[dict], probes: dict | None) -> None:
    rows = [[run.name, r["step"], r.get("val_bpb"), r.get("val_loss")] for run in runs for r in run.evals]
    if rows:
        doc.heading("Evaluation: validation bits per byte")
        doc.table(["stage", "step", "val bpb", "val loss"], rows)
    if evals:
        doc.heading("Evaluation: benchmark suites")
    columns = ["accuracy", "stderr", "n", "chance", "centered"]
    for result in evals:
        core = result.get("core")
        doc.paragraph(
            f"Suite {result.get('suite')} on stage {result.get('stage')} (step {fmt(result.get('step'))}, "
            f"{fmt(result.get('seconds'))} s)" + (f": CORE {fmt(core)}" if core is not None else "")
        )
        doc.table(["task", *columns], [[task, *map(v.get, columns)] for task, v in result["tasks"].items()])
    if probes:
        doc.heading("Evaluation: chat probes")
        doc.table(["kind", "passed"], [[k, v] for k, v in probes.items()])


def add_stage(doc: Document, run: StageRecords, plot_path: Path) -> None:
    doc.heading(f"{run.title} ({run.name})")
    if run.checkpoint:
        doc.paragraph(f"Latest checkpoint: {run.checkpoint}")
    if plot_stage(run, plot_path):
        doc.image(plot_path, f"{run.title}: training curves")
    if run.meta:
        doc.heading("Model", 3)
        doc.table(["", "value"], [[k, verbatim(v)] for k, v in run.meta.model_config.items()])
        doc.heading("Configuration", 3)
        doc.table(["setting", "value"], [[k, verbatim(v)] for k, v in stage_configuration(run.meta).items()])


def sample_conversations(checkpoint: Path, prompts=SAMPLE_PROMPTS, max_tokens: int = 64) -> list[dict]:
    """Ask the chat model each prompt greedily (the only place the report runs a model)."""
    model, tokenizer, _ = load_model(checkpoint, device=pick_device())
    engine = Engine(model, tokenizer, tool="calculator")
    ids = [tokenizer.render_for_completion([{"role": "user", "content": p}]) for p in prompts]
    results = engine.generate(ids, SamplingParams(max_tokens=max_tokens, temperature=0.0))
    return [{"question": p, "reply": r.text} for p, r in zip(prompts, results)]


def add_samples(doc: Document, runs: list[StageRecords], run_summary: dict, generate: bool) -> None:
    """Sample conversations: generated by the SFT model when asked and there is one, else run.json's."""
    sft = next((r for r in runs if r.name == "sft" and r.checkpoint), None)
    if generate and sft:
        try:
            conversations = sample_conversations(sft.checkpoint)
        except UserError as error:
            doc.heading("Sample conversations")
            doc.paragraph(f"Could not generate sample conversations: {error}")
            return
        where = f"generated greedily by {sft.checkpoint}"
    else:
        conversations = examples(run_summary.get("chat_probe_replies") or [])
        where = "recorded by the chat probes of 'picochat run' (the first three of each skill)"
    if conversations:
        doc.heading("Sample conversations")
        doc.paragraph(f"Replies {where}.")
        for conversation in conversations:
            doc.quote("user", conversation["question"])
            doc.quote("picochat", conversation["reply"])


def write_report(home: Path | None = None, html_too: bool = False, samples: bool = True) -> list[Path]:
    home = Path(home) if home is not None else picochat_home()
    (home / "reports").mkdir(parents=True, exist_ok=True)
    doc, _ = build_report(home, samples=samples)
    return doc.write(home / "reports", html_too)
