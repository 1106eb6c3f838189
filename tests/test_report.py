"""The run report: every number equals its source file, every plot opens, a stage that did not run is absent."""

import html
import json
import math
import re
import statistics

import pytest
from PIL import Image
from test_engine import tiny_gpt, tiny_tokenizer

from picochat.checkpoint import CheckpointMeta, save_checkpoint
from picochat.cli import main
from picochat.engine import Engine, SamplingParams
from picochat.report import SAMPLE_PROMPTS, read_stage, stage_panels, write_report

TOKENS_PER_STEP = 256


def write_metrics(run_dir, steps: int, seed: float) -> list[dict]:
    """Training records for `steps` steps and an evaluation every 5, as training.py writes them."""
    records = []
    for step in range(1, steps + 1):
        records.append({
            "step": step, "loss": 5.0 - seed * step / steps, "lr_factor": min(1.0, step / 3),
            "tokens_per_s": 1000.0 + 17.25 * step, "mfu": 0.0125 + 0.0003 * step, "step_time_s": 0.25 + 0.01 * step,
            "tokens": step * TOKENS_PER_STEP,
        })  # fmt: skip
        if step % 5 == 0:
            records.append({"step": step, "val_bpb": 2.5 - seed * step / 100, "val_loss": 3.3 - step / 1000})
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records] + ['{"step": 99, "loss": 1.0']  # a line cut short by a kill
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return records


def save_stage(home, name: str, model, tok, steps: int, seed: float) -> dict:
    run_dir = home / "checkpoints" / name
    records = write_metrics(run_dir, steps, seed)
    last_eval = {"step": steps, "bpb": records[-1]["val_bpb"], "loss": records[-1]["val_loss"]}
    meta = CheckpointMeta(
        step=steps,
        total_steps=steps,
        loaders={"0": {"position": 3}},
        fingerprint={"stage": name, "tokens_per_step": TOKENS_PER_STEP, "seed": 7},
        config={"warmup_steps": 3, "schedule": "wsd", "grad_clip": 1.0},
        last_eval=last_eval,
    )
    save_checkpoint(run_dir, model, meta, tokenizer=tok)
    return {"records": records, "meta": meta}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture
def run_home(isolated_home, tok):
    """A home where pretraining and SFT ran (RL did not), with an eval suite file and a run.json."""
    model = tiny_gpt(tok.vocab_size)
    stages = {"base": save_stage(isolated_home, "base", model, tok, 10, 1.0),
              "sft": save_stage(isolated_home, "sft", model, tok, 5, 0.5)}  # fmt: skip
    reports = isolated_home / "reports"
    reports.mkdir(parents=True)
    suite = {
        "suite": "base", "stage": "base", "checkpoint": "x", "step": 10, "created": "2026-01-01T00:00:00",
        "seconds": 12.5, "core": 0.0123,
        "tasks": {"arc_easy": {"accuracy": 0.27, "stderr": 0.02, "n": 500, "chance": 0.25, "centered": 0.0267},
                  "hellaswag": {"accuracy": 0.3125, "stderr": 0.015, "n": 1000, "chance": 0.25,
                                "centered": 0.08333}},
    }  # fmt: skip
    (reports / "eval_base_base.json").write_text(json.dumps(suite))
    run = {
        "preset": "cpu-tiny", "chat_probes": {"identity": "1/2", "arithmetic": "0/3"},
        "chat_probe_replies": [{"question": "Who are you?", "reply": "I am picochat."}],
        "stage_seconds": {"data": 1.5, "pretrain": 20.25, "sft": 9.0}, "total_seconds": 31.0,
        "machine": {"cpu": "Test CPU", "cpu_cores": 2, "torch": "9.9", "dtype": "bfloat16", "git_commit": "abc123"},
    }  # fmt: skip
    (reports / "run.json").write_text(json.dumps(run))
    return isolated_home, stages, suite, run, model


def tables_by_heading(markdown: str) -> dict[str, list[list[list[str]]]]:
    """heading -> the tables under it, each a list of rows of cells (header row first)."""
    found: dict[str, list] = {}
    heading = None
    for block in markdown.split("\n\n"):
        if block.startswith("#"):
            heading = block.lstrip("#").strip()
        elif block.startswith("|"):
            lines = [line for line in block.splitlines() if not line.startswith("|---")]
            rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
            found.setdefault(heading, []).append(rows)
    return found


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def same(cell: str, value) -> bool:
    """The cell shows `value` (ints exactly, floats to the 5 significant digits the report prints)."""
    if isinstance(value, int):
        return number(cell) == value
    return math.isclose(number(cell), value, rel_tol=5e-5)


def test_every_number_equals_its_source(run_home):
    home, stages, suite, run, model = run_home
    written = write_report(home, html_too=True, samples=False)
    markdown = (home / "reports/report.md").read_text()
    tables = tables_by_heading(markdown)

    (stage_table,) = tables["Stages"]
    header, *rows = stage_table
    assert [r[0] for r in rows] == ["base", "sft"]
    for row in rows:
        cells = dict(zip(header, row))
        source = stages[row[0]]
        train = [r for r in source["records"] if "loss" in r]
        assert same(cells["step"], source["meta"].total_steps)
        assert same(cells["parameters"], model.num_params())  # counted independently, on the real model
        assert same(cells["without embedding"], model.num_params(include_embedding=False))
        assert same(cells["tokens"], train[-1]["tokens"])
        assert same(cells["FLOPs/token"], model.flops_per_token())
        assert same(cells["training FLOPs"], model.flops_per_token() * train[-1]["tokens"])
        assert same(cells["training seconds"], sum(r["step_time_s"] for r in train))
        assert same(cells["tokens/s"], statistics.median(r["tokens_per_s"] for r in train[1:]))
        assert same(cells["MFU %"], 100 * statistics.median(r["mfu"] for r in train[1:]))
        assert same(cells["val bpb"], source["meta"].last_eval["bpb"])

    (bpb_table,) = tables["Evaluation: validation bits per byte"]
    expected = [(name, r) for name, s in stages.items() for r in s["records"] if "val_bpb" in r]
    assert len(bpb_table) - 1 == len(expected)
    for row, (name, record) in zip(bpb_table[1:], expected):
        assert row[0] == name and same(row[1], record["step"])
        assert same(row[2], record["val_bpb"]) and same(row[3], record["val_loss"])

    (suite_table,) = tables["Evaluation: benchmark suites"]
    for row in suite_table[1:]:
        task = suite["tasks"][row[0]]
        for cell, key in zip(row[1:], ["accuracy", "stderr", "n", "chance", "centered"]):
            assert same(cell, task[key])
    assert f"CORE {suite['core']:.5g}" in markdown

    assert tables["Evaluation: chat probes"][0][1:] == [[k, v] for k, v in run["chat_probes"].items()]
    wall = dict(tables["Wall time of 'picochat run'"][0][1:])
    assert all(same(wall[k], v) for k, v in run["stage_seconds"].items())
    assert same(wall["total"], run["total_seconds"])
    machine = dict(tables["Machine"][0][1:])
    assert (
        machine["cpu"] == "Test CPU" and machine["git_commit"] == "abc123" and same(machine["cpu_cores"], 2)
    )

    configuration = dict(tables["Configuration"][0][1:])  # the first stage's (base)
    assert same(configuration["config.warmup_steps"], 3) and configuration["config.schedule"] == "wsd"
    assert same(configuration["fingerprint.tokens_per_step"], TOKENS_PER_STEP)
    assert "loaders.0.position" not in configuration
    model_table = dict(tables["Model"][0][1:])
    assert same(model_table["n_layer"], model.config.n_layer) and same(
        model_table["n_embd"], model.config.n_embd
    )

    assert "**user:** Who are you?" in markdown and "**picochat:** I am picochat." in markdown

    pngs = [p for p in written if p.suffix == ".png"]
    assert sorted(p.name for p in pngs) == ["plot_base.png", "plot_sft.png"]
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
        assert f"]({png.name})" in markdown

    page = (home / "reports/report.html").read_text()
    cells = {cell for rows in tables.values() for table in rows for row in table for cell in row}
    assert all(
        f"<td>{html.escape(cell)}</td>" in page or f"<th>{html.escape(cell)}</th>" in page for cell in cells
    )
    assert page.count("src='data:image/png;base64,") == 2
    assert not re.search(r"src=['\"](?!data:)", page)  # self-contained: no file or network references


def test_a_stage_that_did_not_run_is_absent(run_home):
    home = run_home[0]
    write_report(home, samples=False)
    markdown = (home / "reports/report.md").read_text()
    assert "RL" not in markdown and "rl" not in [row[0] for row in tables_by_heading(markdown)["Stages"][0]]
    assert not (home / "reports/plot_rl.png").exists()


def test_samples_are_generated_from_the_sft_checkpoint(run_home, tok):
    home, model = run_home[0], run_home[-1]
    write_report(home, samples=True)
    markdown = (home / "reports/report.md").read_text()
    engine = Engine(model, tok, tool="calculator")
    prompts = [tok.render_for_completion([{"role": "user", "content": p}]) for p in SAMPLE_PROMPTS]
    for prompt, result in zip(
        SAMPLE_PROMPTS, engine.generate(prompts, SamplingParams(max_tokens=64, temperature=0))
    ):
        assert f"**user:** {prompt}" in markdown
        assert f"**picochat:** {result.text.strip() or '(empty)'}".replace("\n", "  \n") in markdown


def test_an_empty_home_is_a_short_report_not_an_error(isolated_home, capsys):
    assert main(["report", "--html", "--no-samples"]) == 0
    markdown = (isolated_home / "reports/report.md").read_text()
    assert "Nothing has run" in markdown and "picochat run" in markdown
    assert "report.html" in capsys.readouterr().out


def test_an_rl_stage_is_reported_from_its_own_records(run_home):
    home = run_home[0]
    rl = home / "checkpoints/rl"
    rl.mkdir(parents=True)
    records = [
        {"step": s, "reward_mean": 0.1 * s, "reward_std": 0.2, "pass_at_1": 0.05 * s, "kl": 0.01 * s,
         "tokens_per_s": 500.0 + s, "step_time_s": 2.0, "completion_len": 40}
        for s in range(1, 6)
    ]  # fmt: skip
    (rl / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_report(home, samples=False)
    markdown = (home / "reports/report.md").read_text()
    rows = {row[0]: row for row in tables_by_heading(markdown)["Stages"][0][1:]}
    header = tables_by_heading(markdown)["Stages"][0][0]
    cells = dict(zip(header, rows["rl"]))
    assert same(cells["step"], 5) and same(cells["training seconds"], 10.0)
    assert same(cells["tokens/s"], statistics.median(r["tokens_per_s"] for r in records[1:]))
    assert "## RL (rl)" in markdown
    assert [key for key, _, _ in stage_panels(read_stage("rl", rl))] == [
        "tokens_per_s",
        "reward_mean",
        "pass_at_1",
        "kl",
    ]
    with Image.open(home / "reports/plot_rl.png") as image:
        image.verify()


def test_a_chat_model_that_cannot_load_is_said_not_fatal(isolated_home, tok):
    model = tiny_gpt(tok.vocab_size)
    run_dir = isolated_home / "checkpoints/sft"
    write_metrics(run_dir, 5, 1.0)
    save_checkpoint(run_dir, model, CheckpointMeta(step=5, total_steps=5))  # no tokenizer/: no engine
    write_report(isolated_home, samples=True)
    assert "Could not generate sample conversations" in (isolated_home / "reports/report.md").read_text()


def test_a_model_config_from_another_version_leaves_its_sizes_blank(run_home):
    home = run_home[0]
    meta_path = next((home / "checkpoints/base").glob("step_*/meta.json"))
    meta = json.loads(meta_path.read_text())
    meta["model_config"]["attention_sinks"] = 4  # a field this version does not know
    meta_path.write_text(json.dumps(meta))
    write_report(home, samples=False)
    tables = tables_by_heading((home / "reports/report.md").read_text())
    header, base = tables["Stages"][0][0], tables["Stages"][0][1]
    cells = dict(zip(header, base))
    assert cells["parameters"] == "–" and cells["training FLOPs"] == "–" and same(cells["step"], 10)
