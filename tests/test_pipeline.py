"""`picochat run --preset cpu-tiny` end to end: every stage, the summary, resuming, then chatting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_cpu_tiny_pipeline_end_to_end_then_chat(isolated_home):
    env = {**os.environ, "PICOCHAT_HOME": str(isolated_home)}
    run = subprocess.run([sys.executable, "-m", "picochat", "run", "--preset", "cpu-tiny", "--owner", "Ada"],
                         env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((isolated_home / "reports" / "run.json").read_text())
    assert summary["preset"] == "cpu-tiny"
    assert 0 < summary["base_val_bpb"] < 2.0  # an untrained model sits near 8 bits per byte here
    first_turns = {"identity", "arithmetic", "spelling", "spelling_unseen", "counting", "word_problems"}
    first_turns |= {"small_talk", "false_identity"}
    second_turns = {f"second_turn:{skill}" for skill in ("identity", "arithmetic", "spelling", "counting")}
    second_turns.add("second_turn:small_talk")
    assert set(summary["chat_probes"]) == first_turns | second_turns
    assert all(v.endswith("/10" if k in second_turns else "/50") for k, v in summary["chat_probes"].items())
    assert set(summary["stage_seconds"]) == {"data", "tokenizer", "pretrain", "sft", "evaluate"}
    assert "picochat chat" in run.stdout
    assert summary["machine"]["torch"] and len(summary["chat_probe_replies"]) == 450
    reports = isolated_home / "reports"
    assert {"report.md", "plot_base.png", "plot_sft.png"} <= {p.name for p in reports.iterdir()}
    assert summary["chat_probe_replies"][0]["question"] in (reports / "report.md").read_text()

    again = subprocess.run([sys.executable, "-m", "picochat", "run", "--preset", "cpu-tiny"], env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    skip_lines = [line for line in again.stdout.splitlines() if line.endswith("skipping")]
    for skipped in ("corpus", "tokenizer", "base model", "chat model"):
        assert any(line.startswith(f"{skipped} ") for line in skip_lines), (skipped, skip_lines)
    assert (
        json.loads((isolated_home / "reports" / "run.json").read_text())["base_val_bpb"]
        == summary["base_val_bpb"]
    )

    chat = subprocess.run([sys.executable, "-m", "picochat", "chat", "-p", "Who are you?", "--temperature", "0",
                           "--max-tokens", "16"], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert chat.stdout.strip()

    evaluation = subprocess.run([sys.executable, "-m", "picochat", "eval", "--corpus",
                                 str(isolated_home / "data" / "synthetic"), "--batches", "2", "--probes"],
                                env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    bpb = float(evaluation.stdout.split("validation bits per byte ")[1].split(",")[0])
    assert abs(bpb - summary["base_val_bpb"]) < 0.2  # the base model again, on a slice of the same split
    assert "chat probes:" in evaluation.stdout
