"""The run report: what each training stage did, in tables and plots, from the files the run left on disk.

    picochat report                  # $PICOCHAT_HOME/reports/report.md, with plot_<stage>.png beside it
    picochat report --html           # also report.html: the same, one self-contained file
    picochat report --no-samples     # do not load the chat model to write sample conversations

What it reads (and nothing else; this module imports nothing of training):

    checkpoints/<stage>/metrics.jsonl          every step's loss, lr_factor, tokens_per_s, mfu, step_time_s,
                                               tokens; every evaluation's val_bpb, val_loss, ...
    checkpoints/<stage>/step_*/meta.json       the latest checkpoint: model config, settings, last evaluation
    reports/eval_<suite>_<stage>.json          the base and chat suites (`picochat eval`)
    reports/run.json                           `picochat run`'s summary: stage times, chat probes, machine

Stages are `base` (pretraining), `sft` and `rl`; a stage whose run directory holds nothing is left out.
Wall time is the training time the steps took (the sum of `step_time_s`), so evaluations and checkpoint
writes are not in it; `picochat run`'s stage times (which include them) are in their own table.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from picochat.atomic import atomic_write_bytes, atomic_write_text
from picochat.errors import UserError

STAGES = {"base": "pretraining", "sft": "SFT", "rl": "RL"}  # run-directory name -> title
PIPELINE_STAGE = {"base": "pretrain", "sft": "sft", "rl": "rl"}  # run-directory name -> run.json stage
SAMPLE_PROMPTS = ("Who are you?", "What is 12 + 30?", "Spell the word apple.", "Tell me about the sun.")
REPORT_NAME = "report"


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class StageRun:
    """What one training stage left in its run directory."""

    name: str  # the run directory's name: base, sft or rl
    run_dir: Path
    steps: list[dict] = field(default_factory=list)  # training records, by step
    evals: list[dict] = field(default_factory=list)  # validation records (val_* keys), by step
    checkpoint: Path | None = None
    meta: dict | None = None  # the latest complete checkpoint's meta.json

    @property
    def title(self) -> str:
        return STAGES.get(self.name, self.name)

    def elapsed_s(self) -> list[float]:
        """Training seconds after each training record: the running sum of step times."""
        total, out = 0.0, []
        for record in self.steps:
            total += float(record.get("step_time_s") or 0.0)
            out.append(total)
        return out

    def elapsed_at(self, step: int) -> float:
        """Training seconds when `step` had been completed."""
        elapsed = 0.0
        for record, seconds in zip(self.steps, self.elapsed_s()):
            if record["step"] > step:
                break
            elapsed = seconds
        return elapsed


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None when it is missing or unreadable."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """(training records, evaluation records) of a metrics.jsonl, each sorted by step. A record with val_*
    keys (and no training loss) is an evaluation, any other a training step; a line cut short is skipped."""
    steps, evals = [], []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return [], []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "step" not in record:
            continue
        if any(key.startswith("val_") for key in record) and "loss" not in record:
            evals.append(record)
        else:
            steps.append(record)
    return sorted(steps, key=lambda r: r["step"]), sorted(evals, key=lambda r: r["step"])


def latest_checkpoint_meta(run_dir: Path) -> tuple[Path | None, dict | None]:
    """The newest step_* directory whose meta.json is complete, and that meta."""
    for path in sorted(Path(run_dir).glob("step_*"), reverse=True):
        meta = read_json(path / "meta.json")
        if meta and meta.get("complete") and (path / "model.safetensors").exists():
            return path, meta
    return None, None


def read_stage(name: str, run_dir: Path) -> StageRun | None:
    """The stage's records and latest checkpoint, or None when the stage never ran."""
    steps, evals = read_metrics(Path(run_dir) / "metrics.jsonl")
    checkpoint, meta = latest_checkpoint_meta(run_dir) if Path(run_dir).is_dir() else (None, None)
    if not steps and not evals and meta is None:
        return None
    return StageRun(name, Path(run_dir), steps, evals, checkpoint, meta)


def read_evals(reports: Path) -> list[dict]:
    """Every reports/eval_<suite>_<stage>.json, sorted by suite then stage."""
    found = [read_json(path) for path in sorted(Path(reports).glob("eval_*_*.json"))]
    return [e for e in found if e and isinstance(e.get("tasks"), dict)]


# ---------------------------------------------------------------------------------------------- sizes


def model_size(model_config: dict) -> dict:
    """Parameters and training FLOPs per token of the model a config describes (built on the meta device,
    so nothing is allocated; the formula is the model's own, `GPT.flops_per_token`). Empty for a config
    this version of the model cannot build (one written by another version of picochat)."""
    import torch

    from picochat.model import GPT, GPTConfig

    try:
        with torch.device("meta"):
            model = GPT(GPTConfig(**model_config))
    except (TypeError, ValueError):
        return {}
    return {
        "parameters": model.num_params(),
        "parameters_without_embedding": model.num_params(include_embedding=False),
        "flops_per_token": model.flops_per_token(),
    }


def trained_tokens(run: StageRun) -> int | None:
    """Tokens the stage trained on: the last training record's count, else steps × tokens per step."""
    if run.steps and run.steps[-1].get("tokens") is not None:
        return int(run.steps[-1]["tokens"])
    meta = run.meta or {}
    per_step = (meta.get("fingerprint") or {}).get("tokens_per_step")
    return int(per_step) * int(meta["step"]) if per_step and "step" in meta else None


def median(records: list[dict], key: str, scale: float = 1.0) -> float | None:
    """The median of `key` over the records that have it (times `scale`), or None."""
    values = [float(r[key]) * scale for r in records if r.get(key) is not None]
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------------------------------- machine


def git_commit(directory: Path | None = None) -> str | None:
    """The commit of the code (with "+changes" when the work tree differs), or None outside a git checkout."""
    directory = directory or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                timeout=10)  # fmt: skip
        if commit.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
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
    import torch

    from picochat.runtime import compute_dtype, pick_device

    device = pick_device()
    info = {
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": None,
        "gpus": 0,
        "device": device.type,
        "dtype": str(compute_dtype(device)).removeprefix("torch."),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "os": platform.platform(),
        "git_commit": git_commit(),
    }
    if torch.cuda.is_available():
        info["gpus"] = torch.cuda.device_count()
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ---------------------------------------------------------------------------------------------- samples


def sample_conversations(checkpoint: Path, prompts=SAMPLE_PROMPTS, max_tokens: int = 64) -> list[dict]:
    """Ask the chat model each prompt greedily (the only place the report runs a model)."""
    from picochat.checkpoint import load_model
    from picochat.engine import Engine, SamplingParams
    from picochat.runtime import pick_device

    model, tokenizer, _ = load_model(checkpoint, device=pick_device())
    engine = Engine(model, tokenizer, tool="calculator")
    ids = [tokenizer.render_for_completion([{"role": "user", "content": p}]) for p in prompts]
    results = engine.generate(ids, SamplingParams(max_tokens=max_tokens, temperature=0.0))
    return [{"question": p, "reply": r.text} for p, r in zip(prompts, results)]


# ---------------------------------------------------------------------------------------------- plots

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


def stage_panels(run: StageRun) -> list[tuple[str, str, bool]]:
    """The PANELS this stage has records for."""
    return [(key, label, train) for key, label, train in PANELS
            if any(key in r for r in (run.steps if train else run.evals))]  # fmt: skip


def plot_stage(run: StageRun, out: Path) -> Path | None:
    """One PNG for a stage: each metric (rows) against steps and against training seconds (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = stage_panels(run)
    if not panels:
        return None
    elapsed = dict(zip((r["step"] for r in run.steps), run.elapsed_s()))
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 2.6 * len(panels)), squeeze=False)
    for row, (key, label, train) in enumerate(panels):
        records = [r for r in (run.steps if train else run.evals) if r.get(key) is not None]
        scale = 100.0 if key == "mfu" else 1.0
        values = [r[key] * scale for r in records]
        steps = [r["step"] for r in records]
        seconds = [elapsed.get(s, run.elapsed_at(s)) for s in steps]
        style = dict(lw=0.9) if train else dict(marker="o", lw=1.2)
        for col, (xs, xlabel) in enumerate([(steps, "step"), (seconds, "training time (s)")]):
            ax = axes[row][col]
            ax.plot(xs, values, **style)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    fig.suptitle(f"{run.title} ({run.run_dir.name})")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(out, png.getvalue())
    return out


# ---------------------------------------------------------------------------------------------- document


def fmt(value) -> str:
    """A table cell: integers with thousands separators, floats to 5 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.5g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def setting(value):
    """A setting as written in a configuration: integers without thousands separators (a seed of 1337)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def flatten(mapping: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def stage_configuration(meta: dict) -> dict:
    """The settings a checkpoint records, flat; a value recorded twice under one name is shown once."""
    skip = {"loaders", "complete", "last_eval", "model_config", "step"}
    rows: dict = {}
    seen: dict = {}
    for key, value in flatten({k: v for k, v in meta.items() if k not in skip}).items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf in seen and seen[leaf] == value:
            continue
        seen.setdefault(leaf, value)
        rows[key] = value
    return rows


class Document:
    """Headings, paragraphs, tables and images, rendered as Markdown or as one self-contained HTML file."""

    def __init__(self):
        self.blocks: list[tuple] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def table(self, header: list[str], rows: list[list]) -> None:
        if rows:
            self.blocks.append(("table", header, [[fmt(v) for v in row] for row in rows]))

    def image(self, path: Path, alt: str) -> None:
        self.blocks.append(("image", Path(path), alt))

    def quote(self, who: str, text: str) -> None:
        self.blocks.append(("quote", who, text))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "paragraph":
                out.append(block[1])
            elif kind == "table":
                header, rows = block[1], block[2]
                cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
                out.append("\n".join(lines))
            elif kind == "image":
                out.append(f"![{block[2]}]({block[1].name})")
            elif kind == "quote":
                text = block[2].strip() or "(empty)"
                out.append(f"**{block[1]}:** " + text.replace("\n", "  \n"))
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
               "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
               "text-align:left}img{max-width:100%}.who{font-weight:bold}</style></head><body>"]  # fmt: skip
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                out.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "paragraph":
                out.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block[1])
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                    for row in block[2]
                )
                out.append(f"<table><tr>{head}</tr>{body}</table>")
            elif kind == "image":
                data = base64.b64encode(block[1].read_bytes()).decode("ascii")
                out.append(f"<p><img alt='{html.escape(block[2])}' src='data:image/png;base64,{data}'></p>")
            elif kind == "quote":
                text = html.escape(block[2].strip() or "(empty)").replace("\n", "<br>")
                out.append(f"<p><span class='who'>{html.escape(block[1])}:</span> {text}</p>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- the report


def build_report(home: Path, samples: bool = True) -> tuple[Document, list[StageRun]]:
    """Read everything under `home` ($PICOCHAT_HOME) and lay the report out; plots are written beside it."""
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
    if recorded:
        doc.paragraph("As recorded by 'picochat run'.")
    else:
        doc.paragraph("The machine that wrote this report (the run did not record its own).")
    doc.table(["", "value"], [[key, value] for key, value in (recorded or machine_info()).items()])


def add_stage_table(doc: Document, runs: list[StageRun]) -> None:
    """One row per stage: size, cost, time, speed and the final validation result."""
    if not runs:
        return
    rows = []
    for run in runs:
        meta = run.meta or {}
        size = model_size(meta["model_config"]) if meta.get("model_config") else {}
        tokens = trained_tokens(run)
        flops = size["flops_per_token"] * tokens if size and tokens is not None else None
        rows.append([
            run.name, meta.get("step", run.steps[-1]["step"] if run.steps else None), meta.get("total_steps"),
            size.get("parameters"), size.get("parameters_without_embedding"), tokens,
            size.get("flops_per_token"), flops, run.elapsed_s()[-1] if run.steps else None,
            median(run.steps[1:], "tokens_per_s"), median(run.steps[1:], "mfu", scale=100.0),
            (meta.get("last_eval") or {}).get("bpb"),
        ])  # fmt: skip
    doc.heading("Stages")
    doc.table(["stage", "step", "of steps", "parameters", "without embedding", "tokens", "FLOPs/token",
               "training FLOPs", "training seconds", "tokens/s", "MFU %", "val bpb"], rows)  # fmt: skip
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
        doc.table(["stage", "seconds"], [[k, v] for k, v in timings.items()]
                  + [["total", run_summary.get("total_seconds")]])  # fmt: skip


def add_evaluations(doc: Document, runs: list[StageRun], evals: list[dict], probes: dict | None) -> None:
    """Validation bits per byte of every stage, the benchmark suites, the chat probes."""
    rows = [[run.name, r["step"], r.get("val_bpb"), r.get("val_loss")] for run in runs for r in run.evals]
    if rows:
        doc.heading("Evaluation: validation bits per byte")
        doc.table(["stage", "step", "val bpb", "val loss"], rows)
    if evals:
        doc.heading("Evaluation: benchmark suites")
    for result in evals:
        core = result.get("core")
        doc.paragraph(
            f"Suite {result.get('suite')} on stage {result.get('stage')} (step {fmt(result.get('step'))}, "
            f"{fmt(result.get('seconds'))} s)" + (f": CORE {fmt(core)}" if core is not None else "")
        )
        doc.table(["task", "accuracy", "stderr", "n", "chance", "centered"], [
            [task, v.get("accuracy"), v.get("stderr"), v.get("n"), v.get("chance"), v.get("centered")]
            for task, v in result["tasks"].items()
        ])  # fmt: skip
    if probes:
        doc.heading("Evaluation: chat probes")
        doc.table(["kind", "passed"], [[k, v] for k, v in probes.items()])


def add_stage(doc: Document, run: StageRun, plot_path: Path) -> None:
    """A stage's curves, model and configuration."""
    doc.heading(f"{run.title} ({run.name})")
    if run.checkpoint:
        doc.paragraph(f"Latest checkpoint: {run.checkpoint}")
    if plot_stage(run, plot_path):
        doc.image(plot_path, f"{run.title}: training curves")
    if run.meta:
        doc.heading("Model", 3)
        doc.table(["", "value"], [[k, setting(v)] for k, v in (run.meta.get("model_config") or {}).items()])
        doc.heading("Configuration", 3)
        doc.table(["setting", "value"], [[k, setting(v)] for k, v in stage_configuration(run.meta).items()])


def add_samples(doc: Document, runs: list[StageRun], run_summary: dict, generate: bool) -> None:
    """Sample conversations: generated by the SFT model when asked and there is one, else run.json's."""
    conversations, where = [], ""
    sft = next((r for r in runs if r.name == "sft" and r.checkpoint), None)
    if generate and sft:
        try:
            conversations = sample_conversations(sft.checkpoint)
            where = f"generated greedily by {sft.checkpoint}"
        except UserError as error:
            doc.heading("Sample conversations")
            doc.paragraph(f"Could not generate sample conversations: {error}")
            return
    elif run_summary.get("chat_probe_replies"):
        from picochat.evaluation.probes import examples

        conversations, where = (
            examples(run_summary["chat_probe_replies"]),
            "recorded by the chat probes of 'picochat run' (the first three of each skill)",
        )
    if conversations:
        doc.heading("Sample conversations")
        doc.paragraph(f"Replies {where}.")
        for c in conversations:
            doc.quote("user", c["question"])
            doc.quote("picochat", c["reply"])


def write_report(home: Path | None = None, html_too: bool = False, samples: bool = True) -> list[Path]:
    """Write reports/report.md (and report.html) under `home`; return the files written."""
    from picochat.paths import picochat_home

    home = Path(home) if home is not None else picochat_home()
    doc, _ = build_report(home, samples=samples)
    reports = home / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    written = [reports / f"{REPORT_NAME}.md"]
    atomic_write_text(written[0], doc.markdown())
    written += [block[1] for block in doc.blocks if block[0] == "image"]
    if html_too:
        written.append(reports / f"{REPORT_NAME}.html")
        atomic_write_text(written[-1], doc.html("picochat run report"))
    return written
