"""The run report (`picochat report [--html] [--no-samples]`) from the files the run left on disk
(docs/report.md lists them): what the run made and how good it is first (a summary card, its figures in
report.json), then what each stage did, in tables and plots. How it reads: picochat/report_html.py.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch

from picochat.atomic import atomic_write_json
from picochat.checkpoint import CheckpointMeta, latest_checkpoint, load_model, read_meta
from picochat.engine import Engine, SamplingParams
from picochat.errors import UserError
from picochat.evaluation.probes import examples
from picochat.model import GPT, GPTConfig
from picochat.paths import picochat_home
from picochat.report_html import (
    PROBE_RULES,
    Document,
    card_rows,
    duration,
    people,
    percent,
    plot_stage,
    plus_minus,
    si,
    signed,
    significant,
)
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


def median(records: list[dict], key: str) -> float | None:
    values = [float(r[key]) for r in records if r.get(key) is not None]
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


# --- the run's facts: report.json, and the summary card that shows them -----------------------------------


def model_of(meta: CheckpointMeta | None) -> GPT | None:
    """The checkpoint's model on the meta device (nothing allocated), for its sizes; None if it has none."""
    try:
        with torch.device("meta"):
            return GPT(GPTConfig(**meta.model_config)) if meta and meta.model_config else None
    except (TypeError, ValueError):  # a config from another version of picochat: no sizes
        return None


def stage_cost(run: StageRecords) -> dict:
    """Tokens, FLOPs (FLOPs/token × tokens), training seconds (the sum of step times) and the median
    tokens/s and MFU over the steps after the first (which pays for compilation and warm caches)."""
    model, tokens = model_of(run.meta), trained_tokens(run)
    per_token = model.flops_per_token() if model else None
    return {
        "title": run.title,
        "tokens": tokens,
        "flops_per_token": per_token,
        "flops": per_token * tokens if per_token and tokens is not None else None,
        "training_seconds": sum(float(r.get("step_time_s") or 0.0) for r in run.steps) if run.steps else None,
        "tokens_per_s": median(run.steps[1:], "tokens_per_s"),
        "mfu": median(run.steps[1:], "mfu"),
    }


def model_facts(runs: list[StageRecords]) -> dict:
    meta = next((run.meta for run in reversed(runs) if run.meta and run.meta.model_config), None)
    model = model_of(meta)
    if model is None:
        return {}
    c = model.config
    return {
        "parameters": model.num_params(),
        "parameters_without_embedding": model.num_params(include_embedding=False),
        "depth": c.n_layer,
        "width": c.n_embd,
        "heads": c.n_head,
        "context": c.seq_len,
        "vocab_size": c.vocab_size,
    }


def rl_facts(run: StageRecords) -> dict | None:
    """Held-out pass@1 before (metrics.jsonl's step-0 record) and after (its last evaluation), per task,
    and the paired gain `picochat rl` computed on the same problems."""
    evals = [r for r in run.evals if "val_pass_at_1" in r]
    if not evals:
        return None
    after = evals[-1]
    before = evals[0] if evals[0]["step"] == 0 and len(evals) > 1 else {}
    tasks = [
        k[4:].removesuffix("_pass_at_1") for k in after if k.endswith("_pass_at_1") and k != "val_pass_at_1"
    ]
    per_task = {
        t: {"before": before.get(f"val_{t}_pass_at_1"), "after": after[f"val_{t}_pass_at_1"]} for t in tasks
    }
    return {
        "step": after["step"],
        "problems": after.get("val_problems"),
        "before": before.get("val_pass_at_1"),
        "after": after["val_pass_at_1"],
        "after_stderr": after.get("val_pass_at_1_stderr"),
        "gain": after.get("val_paired_gain"),
        "gain_stderr": after.get("val_paired_gain_stderr"),
        "tasks": per_task,
    }


def probe_facts(probes: dict | None) -> dict:
    """run.json's {skill: "passed/asked"} as numbers."""
    facts = {}
    for skill, text in (probes or {}).items():
        passed, _, asked = str(text).partition("/")
        if passed.isdigit() and asked.isdigit() and int(asked):
            facts[skill] = {"passed": int(passed), "asked": int(asked), "rate": int(passed) / int(asked)}
    return facts


def suite_of(evals: list[dict], suite: str, stage: str) -> dict | None:
    found = [e for e in evals if e.get("suite") == suite]
    return next((e for e in found if e.get("stage") == stage), found[0] if found else None)


def run_facts(runs: list[StageRecords], run_summary: dict, evals: list[dict]) -> dict:
    """Everything the summary card shows, at full precision: what report.json holds."""
    by_name = {run.name: run for run in runs}
    base = by_name.get("base")
    bpb = base.meta.last_eval.get("bpb") if base and base.meta else None
    base_suite, chat = suite_of(evals, "base", "base"), suite_of(evals, "chat", "sft")
    core = base_suite.get("core") if base_suite else None
    results = {
        "val_bpb": {"value": bpb, "stage": "base", "step": base.meta.last_eval.get("step")} if bpb else None,
        "core": {"value": core, "tasks": len(base_suite["tasks"])} if core is not None else None,
        "chat_probes": probe_facts(run_summary.get("chat_probes")),
        "rl": rl_facts(by_name["rl"]) if "rl" in by_name else None,
        "chat_suite": {
            task: {k: v.get(k) for k in ("accuracy", "stderr", "n", "chance", "centered")}
            for task, v in (chat or {}).get("tasks", {}).items()
        },
    }
    cost = {
        "machine": run_summary.get("machine") or machine_info(),
        "machine_recorded_by_run": bool(run_summary.get("machine")),
        "wall_seconds": run_summary.get("stage_seconds") or {},
        "total_seconds": run_summary.get("total_seconds"),
        "stages": {run.name: stage_cost(run) for run in runs},
    }
    return {"model": model_facts(runs), "cost": cost, "results": results}


# --- the report, section by section ------------------------------------------------------------------------


def build_report(home: Path, samples: bool = True) -> tuple[Document, list[StageRecords], dict]:
    """The layout, the stages that ran and the run's facts (report.json)."""
    home = Path(home)
    reports = home / "reports"
    runs = [run for name in STAGES if (run := read_stage(name, home / "checkpoints" / name))]
    run_summary = read_json(reports / "run.json") or {}
    evals = read_evals(reports)

    doc = Document()
    doc.heading("picochat run report", 1)
    if not runs and not evals and not run_summary:
        doc.paragraph(f"Nothing has run under {home} yet: 'picochat run' trains a model end to end.")
        return doc, runs, {}
    facts = run_facts(runs, run_summary, evals)
    doc.paragraph(f"Stages that ran: {', '.join(f'{r.title} ({r.name})' for r in runs) or 'none'}.")
    doc.card("Summary", card_rows(facts))
    for run in reversed(runs):  # the last stage first: the model the run ended with
        add_stage(doc, run, reports / f"plot_{run.name}.png", facts)
    add_evaluations(doc, evals, facts["results"]["chat_probes"])
    add_samples(doc, runs, run_summary, samples)
    add_stage_table(doc, runs)
    add_run_times(doc, run_summary)
    add_machine(doc, facts["cost"])
    for run in runs:
        add_settings(doc, run)
    return doc, runs, facts


def add_stage(doc: Document, run: StageRecords, plot_path: Path, facts: dict) -> None:
    doc.heading(f"{run.title} ({run.name})")
    if run.name == "rl":
        add_rl(doc, facts["results"]["rl"])
    if run.name == "sft" and run.meta and run.meta.fingerprint.get("mix"):
        add_mixture(doc, run.meta.fingerprint["mix"])
    rows = [[r["step"], r["val_bpb"], r.get("val_loss")] for r in run.evals if r.get("val_bpb") is not None]
    if rows:
        doc.heading("Validation", 3)
        doc.table(["step", "val bpb", "val loss"], rows)
    if plot_stage(run, plot_path):
        doc.image(plot_path, f"{run.title}: training curves against steps")
    if run.checkpoint:
        doc.paragraph(f"Latest checkpoint: {run.checkpoint}")


def optional_percent(fraction: float | None) -> str | None:
    return None if fraction is None else percent(fraction)


def change(before: float | None, after: float) -> str | None:
    """after − before of two rates, in percentage points."""
    return None if before is None else f"{signed(100 * (after - before))} pp"


def add_rl(doc: Document, rl: dict | None) -> None:
    if not rl:
        doc.paragraph("No held-out evaluation recorded.")
        return
    doc.heading("Held-out pass@1", 3)
    rates = [("all tasks", rl["before"], rl["after"])]
    rates += [(task, v["before"], v["after"]) for task, v in rl["tasks"].items()]
    rows = [
        [task, optional_percent(before), percent(after), change(before, after)]
        for task, before, after in rates
    ]
    doc.table(["task", "before RL", "after RL", "change"], rows)
    if rl["gain"] is not None:
        doc.paragraph(
            f"Paired gain {plus_minus(rl['gain'], rl['gain_stderr'])}: the mean of after − before over the "
            "same problems, ± its standard error (the same problems on both sides cancel their difficulty)."
        )
    doc.paragraph(
        f"Greedy replies to the first {rl['problems']:,} held-out problems (all tasks together), checked by "
        f"each task's reward; before is the starting chat model, after is step {rl['step']:,}. The curves "
        "are of the sampled training replies: mean reward, pass@1, KL to the starting model (nats per "
        "token) and reply length."
    )


def mixture(text: str) -> list[tuple[str, float]]:
    """'identity:2,arithmetic:4,jsonl:PATH:1' -> [(name, weight)]; a part without a weight weighs 1."""
    parts = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.rpartition(":")
        try:
            parts.append((name, float(weight)))
        except ValueError:
            parts.append((part, 1.0))
    return parts


def add_mixture(doc: Document, text: str) -> None:
    parts = mixture(text)
    total = sum(weight for _, weight in parts) or 1.0
    doc.heading("Mixture", 3)
    doc.table(["task", "weight", "share of conversations"], [[n, w, percent(w / total)] for n, w in parts])


def add_evaluations(doc: Document, evals: list[dict], probes: dict) -> None:
    if evals:
        doc.heading("Evaluation: benchmark suites")
    for result in evals:
        core = result.get("core")
        seconds = f", {duration(result['seconds'])}" if result.get("seconds") is not None else ""
        doc.paragraph(
            f"Suite {result.get('suite')} on stage {result.get('stage')} (step {people(result.get('step'))}"
            f"{seconds})" + (f": CORE {signed(core)}" if core is not None else "")
        )
        rows = [
            [
                task,
                percent(v["accuracy"]),
                percent(v["stderr"]),
                v["n"],
                percent(v["chance"]),
                signed(v["centered"]),
            ]
            for task, v in result["tasks"].items()
        ]
        doc.table(["task", "accuracy", "stderr", "n", "chance", "centred"], rows)
    if probes:
        doc.heading("Evaluation: chat probes")
        rows = [
            [k, f"{p['passed']}/{p['asked']}", percent(p["rate"]), PROBE_RULES.get(k, "")]
            for k, p in probes.items()
        ]
        doc.table(["skill", "passed", "rate", "a pass"], rows)


STAGE_COLUMNS = ["stage", "step", "of steps", "parameters", "without embedding", "tokens", "FLOPs/token"]
STAGE_COLUMNS += ["training FLOPs", "training time", "tokens/s", "MFU", "val bpb"]


def stage_row(run: StageRecords) -> list:
    meta, model, cost = run.meta, model_of(run.meta), stage_cost(run)
    tokens_per_s, mfu = cost["tokens_per_s"], cost["mfu"]
    return [
        run.name,
        meta.step if meta else (run.steps[-1]["step"] if run.steps else None),
        meta.total_steps if meta else None,
        model.num_params() if model else None,
        model.num_params(include_embedding=False) if model else None,
        cost["tokens"],
        si(cost["flops_per_token"], "FLOP") if cost["flops_per_token"] else None,
        si(cost["flops"], "FLOP") if cost["flops"] else None,
        duration(cost["training_seconds"]) if cost["training_seconds"] is not None else None,
        significant(tokens_per_s, 3) if tokens_per_s else None,
        percent(mfu) if mfu is not None else None,
        meta.last_eval.get("bpb") if meta else None,
    ]


def add_stage_table(doc: Document, runs: list[StageRecords]) -> None:
    if not runs:
        return
    doc.heading("Stages")
    doc.table(STAGE_COLUMNS, [stage_row(run) for run in runs])
    doc.paragraph(
        "FLOPs/token is the model's training cost per token, 6·N + 6·L·H·D·T (forward and backward; "
        "N the parameters without the embedding); training FLOPs = FLOPs/token × tokens. Training time "
        "is the sum of step times (evaluations and checkpoints excluded). Tokens/s and MFU are medians over "
        "the steps after the first (which pays for compilation and warm caches). report.json holds each at full precision."
    )


def add_run_times(doc: Document, run_summary: dict) -> None:
    timings = run_summary.get("stage_seconds")
    if timings:
        doc.heading("Wall time of 'picochat run'")
        rows = [[stage, duration(seconds)] for stage, seconds in timings.items()]
        total = run_summary.get("total_seconds")
        doc.table(["stage", "time"], [*rows, ["total", duration(total) if total is not None else None]])


def add_machine(doc: Document, cost: dict) -> None:
    doc.heading("Machine")
    own = "The machine that wrote this report (the run did not record its own)."
    doc.paragraph("As recorded by 'picochat run'." if cost["machine_recorded_by_run"] else own)
    doc.table(["", "value"], [[key, verbatim(value)] for key, value in cost["machine"].items()])


def add_settings(doc: Document, run: StageRecords) -> None:
    if run.meta:
        doc.heading(f"Settings of {run.title} ({run.name})")
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
    doc, _, facts = build_report(home, samples=samples)
    atomic_write_json(home / "reports" / "report.json", facts)
    return [*doc.write(home / "reports", html_too), home / "reports" / "report.json"]
