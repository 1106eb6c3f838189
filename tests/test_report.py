"""The run report: every number equals its source file, every plot opens, a stage that did not run is absent."""

import html
import json
import math
import re
import statistics
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from test_engine import tiny_gpt, tiny_tokenizer
from test_rl import toy_config

from picochat.checkpoint import CheckpointMeta, latest_checkpoint, save_checkpoint
from picochat.cli import main
from picochat.engine import Engine, SamplingParams
from picochat.report import SAMPLE_PROMPTS, read_stage, write_report
from picochat.report_html import stage_panels
from picochat.rl import rl

TOKENS_PER_STEP = 256
SFT_MIX = "identity:2,arithmetic:4,jsonl:/data/my.jsonl:1"


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
    mix = {"mix": SFT_MIX} if name == "sft" else {}
    run_dir = home / "checkpoints" / name
    records = write_metrics(run_dir, steps, seed)
    last_eval = {"step": steps, "bpb": records[-1]["val_bpb"], "loss": records[-1]["val_loss"]}
    meta = CheckpointMeta(
        step=steps,
        total_steps=steps,
        loaders={"0": {"position": 3}},
        fingerprint={"stage": name, "tokens_per_step": TOKENS_PER_STEP, "seed": 7} | mix,
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
    return make_run_home(isolated_home, tok)


def make_run_home(isolated_home, tok):
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


SI = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def shown(cell: str) -> float:
    """The value a cell shows, read back as a person reads it: 1,234 · 0.4407 · +0.0267 · 27.5% · 7.25 s ·
    1:15 (m:ss) · 1:02:03 · 8.414 TFLOP · 1.2e-05."""
    if re.fullmatch(r"\d+(:\d\d){1,2}", cell):
        return float(sum(int(p) * 60**i for i, p in enumerate(reversed(cell.split(":")))))
    mantissa, exponent, unit = re.match(
        r"([+-]?[\d,]*\.?\d+)(e[+-]\d+)?\s?(%|[kMGTPE](?=FLOP|\b))?", cell
    ).groups()
    value = float(mantissa.replace(",", "")) * 10 ** int(exponent[1:] if exponent else 0)
    return value / 100 if unit == "%" else value * SI[unit or ""]


def same(cell: str, value, digits: int = 4) -> bool:
    """The cell shows `value`: integers exactly, times to the second, floats to `digits` significant digits."""
    if isinstance(value, int) or re.fullmatch(r"\d+(:\d\d){1,2}", cell):
        return abs(shown(cell) - value) <= (0 if isinstance(value, int) else 0.5)
    if value == 0:
        return shown(cell) == 0
    half_unit = 0.5 * 10 ** (math.floor(math.log10(abs(value))) - digits + 1)
    return abs(shown(cell) - value) <= half_unit * (1 + 1e-9)


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
        assert same(cells["FLOPs/token"], float(model.flops_per_token()))
        assert same(cells["training FLOPs"], float(model.flops_per_token() * train[-1]["tokens"]))
        assert same(cells["training time"], sum(r["step_time_s"] for r in train), digits=3)
        assert same(cells["tokens/s"], statistics.median(r["tokens_per_s"] for r in train[1:]), digits=3)
        assert same(cells["MFU"], statistics.median(r["mfu"] for r in train[1:]), digits=3)
        assert cells["MFU"].endswith("%")
        assert same(cells["val bpb"], source["meta"].last_eval["bpb"])

    validation = tables["Validation"]  # one table a stage, the last stage first
    for table, name in zip(validation, ["sft", "base"], strict=True):
        expected = [r for r in stages[name]["records"] if "val_bpb" in r]
        assert len(table) - 1 == len(expected)
        for row, record in zip(table[1:], expected):
            assert (
                same(row[0], record["step"])
                and same(row[1], record["val_bpb"])
                and same(row[2], record["val_loss"])
            )

    (suite_table,) = tables["Evaluation: benchmark suites"]
    assert suite_table[0] == ["task", "accuracy", "stderr", "n", "chance", "centred"]
    for row in suite_table[1:]:
        task = suite["tasks"][row[0]]
        assert (
            same(row[1], task["accuracy"], 3) and same(row[2], task["stderr"], 3) and same(row[3], task["n"])
        )
        assert same(row[4], task["chance"], 3) and row[1].endswith("%") and row[4].endswith("%")
        assert same(row[5], task["centered"]) and row[5][0] in "+-"
    assert f"CORE +{suite['core']}" in markdown

    probes = tables["Evaluation: chat probes"][0][1:]
    assert [row[:2] for row in probes] == [[k, v] for k, v in run["chat_probes"].items()]
    for row, text in zip(probes, run["chat_probes"].values()):
        passed, asked = map(int, text.split("/"))
        assert same(row[2], passed / asked, 3) and row[3]  # with its rule
    wall = dict(tables["Wall time of 'picochat run'"][0][1:])
    assert all(same(wall[k], v, 3) for k, v in run["stage_seconds"].items())
    assert same(wall["total"], run["total_seconds"], 3)
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
    assert all(re.search(f"<t[dh][^>]*>{re.escape(html.escape(cell))}</t[dh]>", page) for cell in cells)
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


CHAT_SUITE = {
    "suite": "chat", "stage": "sft", "step": 5, "seconds": 75.5, "core": None,
    "tasks": {"arc_easy": {"accuracy": 0.3125, "stderr": 0.0655, "n": 48, "chance": 0.25, "centered": 0.08333},
              "gsm8k": {"accuracy": 0.0, "stderr": 0.0, "n": 48, "chance": 0.0, "centered": 0.0}},
}  # fmt: skip


@pytest.fixture(scope="session")
def full_report(tmp_path_factory):
    """A home where every stage ran, RL for real (4 GRPO steps on two toy tasks from the SFT checkpoint),
    with both suites and a run.json, its report written once (HTML too)."""
    home = tmp_path_factory.mktemp("full") / "picochat_home"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models run fastest on one thread
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PICOCHAT_HOME", str(home))
        _, stages, suite, run, model = make_run_home(home, tiny_tokenizer())
        (home / "reports/eval_chat_sft.json").write_text(json.dumps(CHAT_SUITE))
        sft = latest_checkpoint(home / "checkpoints/sft")
        tasks = "contains:e:1,contains:a:1"
        config = toy_config(sft, home / "checkpoints/rl", tasks=tasks, steps=4, eval_problems=6, log_every=2)
        result = rl(config)
        write_report(home, html_too=True, samples=False)
    torch.set_num_threads(threads)
    facts = json.loads((home / "reports/report.json").read_text())
    rl_records = [
        json.loads(line) for line in (home / "checkpoints/rl/metrics.jsonl").read_text().splitlines()
    ]
    return SimpleNamespace(home=home, stages=stages, suite=suite, run=run, model=model, rl=result,
                           rl_records=rl_records, facts=facts)  # fmt: skip


def test_the_summary_card_comes_first_and_holds_the_runs_figures(full_report):
    r = full_report
    markdown = (r.home / "reports/report.md").read_text()
    assert re.findall(r"^## (.*)$", markdown, re.M)[0] == "Summary"
    card = {row[0]: row[1:] for row in tables_by_heading(markdown)["Summary"][0][1:]}
    assert all(rule for _, rule in card.values())  # every figure says what it means

    # report.json holds each figure at full precision, equal to its source
    results, cost = r.facts["results"], r.facts["cost"]
    assert results["val_bpb"]["value"] == r.stages["base"]["meta"].last_eval["bpb"]
    assert results["core"] == {"value": r.suite["core"], "tasks": 2}
    for skill, text in r.run["chat_probes"].items():
        passed, asked = map(int, text.split("/"))
        assert results["chat_probes"][skill]["rate"] == passed / asked
        assert f"({passed}/{asked})" in card[f"chat probe: {skill}"][0]
    before = r.rl_records[0]
    assert before["step"] == 0 and results["rl"]["before"] == before["val_pass_at_1"]
    assert results["rl"]["after"] == r.rl["pass_at_1"]
    # paired over the same problems, the gain is the difference of the two rates
    assert math.isclose(results["rl"]["gain"], r.rl["pass_at_1"] - before["val_pass_at_1"], abs_tol=1e-12)
    assert results["rl"]["gain_stderr"] == r.rl["paired_gain_stderr"]
    assert results["chat_suite"]["arc_easy"]["accuracy"] == CHAT_SUITE["tasks"]["arc_easy"]["accuracy"]
    assert r.facts["model"]["parameters"] == r.model.num_params()
    base_tokens = r.stages["base"]["records"][-2]["tokens"]
    assert cost["stages"]["base"]["flops"] == r.model.flops_per_token() * base_tokens
    base_steps = [x for x in r.stages["base"]["records"] if "loss" in x]
    assert cost["stages"]["base"]["tokens_per_s"] == statistics.median(
        x["tokens_per_s"] for x in base_steps[1:]
    )
    assert cost["total_seconds"] == r.run["total_seconds"]

    # and the card shows them, for people
    assert same(card["validation bits per byte"][0], results["val_bpb"]["value"])
    assert card["CORE"][0] == f"+{r.suite['core']}" and "over 2 tasks" in card["CORE"][1]
    assert same(card["model"][0], float(r.model.num_params())) and card["model"][0].endswith(" parameters")
    assert same(card["pretraining compute"][0], float(cost["stages"]["base"]["flops"]))
    assert card["pretraining compute"][0].endswith("FLOP")
    assert same(card["wall time of 'picochat run'"][0], r.run["total_seconds"], digits=3)
    gain, error = card["RL held-out gain"][0].split(" ± ")
    assert gain[0] in "+-" and abs(float(gain) - results["rl"]["gain"]) <= 0.5 * 10 ** -len(
        error.split(".")[-1]
    )
    assert (
        same(card["chat suite: arc_easy"][0], 0.3125, 3) and "chance 25%" in card["chat suite: arc_easy"][1]
    )


def test_every_stage_has_its_section(full_report):
    r = full_report
    markdown = (r.home / "reports/report.md").read_text()
    headings = re.findall(r"^## (.*)$", markdown, re.M)
    assert headings[1:4] == ["RL (rl)", "SFT (sft)", "pretraining (base)"]  # the last stage first
    tables = tables_by_heading(markdown)

    (held_out,) = tables["Held-out pass@1"]
    before, after = r.rl_records[0], [x for x in r.rl_records if "val_pass_at_1" in x][-1]
    rows = {row[0]: row[1:] for row in held_out[1:]}
    assert set(rows) == {"all tasks", "contains:e", "contains:a"}
    for task, key in [("all tasks", "val_pass_at_1"), ("contains:e", "val_contains:e_pass_at_1"),
                      ("contains:a", "val_contains:a_pass_at_1")]:  # fmt: skip
        assert same(rows[task][0], before[key], 3) and same(rows[task][1], after[key], 3)
        assert same(rows[task][2], 100 * (after[key] - before[key])) and rows[task][2].endswith(" pp")
    assert "Paired gain" in markdown
    rl_panels = [key for key, _, _ in stage_panels(read_stage("rl", r.home / "checkpoints/rl"))]
    assert {"reward_mean", "kl", "completion_len"} <= set(rl_panels)
    for png in ("plot_rl.png", "plot_sft.png", "plot_base.png"):
        with Image.open(r.home / "reports" / png) as image:
            image.verify()
            assert image.width <= 760  # drawn at the text column's width

    (mixture,) = tables["Mixture"]  # SFT's, shares of the weights 2 : 4 : 1
    assert [row[0] for row in mixture[1:]] == ["identity", "arithmetic", "jsonl:/data/my.jsonl"]
    for row, weight in zip(mixture[1:], [2, 4, 1]):
        assert same(row[2], weight / 7, 3) and row[2].endswith("%")

    stage_rows = {row[0]: dict(zip(tables["Stages"][0][0], row)) for row in tables["Stages"][0][1:]}
    steps = [x for x in r.rl_records if "reward_mean" in x]
    assert same(stage_rows["rl"]["step"], 4) and len(steps) == 4
    assert same(stage_rows["rl"]["training time"], sum(x["step_time_s"] for x in steps), 3)


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
