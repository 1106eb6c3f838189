"""Nothing lost, nothing mismatched: one writer per run directory, checkpoints checked before loading,
no destructive defaults, and every failure a one-line error.

Models and tokenizers are tiny and made here; the few end-to-end cases train for two or three steps.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from picochat import cli
from picochat.checkpoint import (
    CheckpointMeta,
    check_compatible,
    list_checkpoints,
    load_model,
    open_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    tokenizer_fingerprint,
)
from picochat.data.corpus import write_synthetic_corpus
from picochat.data.shards import iter_documents
from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.rundir import LOCK_FILE, RunDirLock
from picochat.tokenizer import Tokenizer

TINY = dict(
    depth=1, seq_len=32, device_batch=2, batch_tokens=128, warmup_steps=1, eval_batches=1, log_every=5
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A corpus and two tokenizers of the same size trained on different text."""
    root = tmp_path_factory.mktemp("reliability")
    corpus = write_synthetic_corpus(root / "corpus", n_docs=80, seed=3)
    docs = list(iter_documents(sorted((corpus / "train").glob("*.parquet"))))
    Tokenizer.train(docs, vocab_size=300).save(root / "tok_a")
    other = [d.upper()[::-1] for d in docs]
    Tokenizer.train(other, vocab_size=300).save(root / "tok_b")
    Tokenizer.train(docs, vocab_size=280).save(root / "tok_small")
    return {"corpus": corpus, "a": root / "tok_a", "b": root / "tok_b", "small": root / "tok_small"}


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """A run of 4 steps killed after step 2 (its checkpoint at step 2), trained once and copied per test."""
    from picochat.pretrain import pretrain

    run = tmp_path_factory.mktemp("trained") / "run"
    pretrain(config_for(world, run, steps=4, save_every=2, stop_after_steps=2))
    return run


def copy_of(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def config_for(world, run_dir, tokenizer="a", **overrides):
    from picochat.pretrain import preset_config

    return preset_config(
        "cpu-tiny",
        corpus=world["corpus"],
        tokenizer=world[tokenizer],
        run_dir=run_dir,
        **{**TINY, **overrides},
    )


def tiny_checkpoint(
    run_dir: Path, tokenizer: Tokenizer, step: int = 1, vocab_size: int | None = None
) -> Path:
    config = GPTConfig(vocab_size=vocab_size or tokenizer.vocab_size, seq_len=16, n_layer=1, n_head=1,
                       n_kv_head=1, n_embd=16)  # fmt: skip
    return save_checkpoint(run_dir, GPT(config), CheckpointMeta(step=step), tokenizer=tokenizer, keep=3)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- one writer per run directory --------------------------------------------------------------------

HOLD_LOCK = "import sys, time; from picochat.rundir import RunDirLock\n" \
            "lock = RunDirLock(sys.argv[1]); lock.acquire(); print('locked', flush=True); time.sleep(60)"  # fmt: skip


def hold_lock_in_another_process(run_dir: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_with_the_holders_pid_and_a_dead_holders_lock_is_taken_over(tmp_path):
    holder = hold_lock_in_another_process(tmp_path / "run")
    try:
        with pytest.raises(UserError, match=f"in use by process {holder.pid}"):
            RunDirLock(tmp_path / "run").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "run" / LOCK_FILE).exists()  # left behind by kill -9 ...
    with RunDirLock(tmp_path / "run"):  # ... and taken over, since its holder is dead
        assert (tmp_path / "run" / LOCK_FILE).read_text().split()[0] == str(os.getpid())


def test_two_training_runs_on_one_run_directory(world, trained, tmp_path):
    from picochat.pretrain import pretrain

    run = copy_of(trained, tmp_path)
    before = snapshot(run)
    holder = hold_lock_in_another_process(run)
    try:
        with pytest.raises(UserError, match=f"in use by process {holder.pid}"):
            pretrain(config_for(world, run, steps=4))
    finally:
        holder.kill()
        holder.wait()
    after = snapshot(run)
    after.pop(LOCK_FILE, None), before.pop(LOCK_FILE, None)
    assert after == before  # the refused run touched neither checkpoints nor metrics


# ---- keep_last and stale temporaries -----------------------------------------------------------------


@pytest.mark.parametrize("keep", [-1, -5])
def test_negative_keep_is_an_error_and_deletes_nothing(tmp_path, world, keep):
    tokenizer = Tokenizer.load(world["a"])
    for step in (1, 2):
        tiny_checkpoint(tmp_path / "run", tokenizer, step)
    before = snapshot(tmp_path / "run")
    with pytest.raises(UserError, match="keep_last must be"):
        save_checkpoint(tmp_path / "run", GPT(GPTConfig(vocab_size=300, n_layer=1, n_head=1, n_kv_head=1,
                        n_embd=16, seq_len=16)), CheckpointMeta(step=3), tokenizer=tokenizer, keep=keep)  # fmt: skip
    assert snapshot(tmp_path / "run") == before


def test_negative_keep_last_refuses_training_before_it_starts(world, trained, tmp_path):
    from picochat.pretrain import pretrain

    run = copy_of(trained, tmp_path)
    before = snapshot(run)
    with pytest.raises(UserError, match="keep.last"):
        pretrain(config_for(world, run, steps=4, keep_last=-1))
    assert snapshot(run) == before


def test_stale_temporary_checkpoints_of_dead_writers_are_removed(tmp_path, world):
    run = tmp_path / "run"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = run / f".tmp-step_000005-{dead.stdout.strip()}"
    live = run / f".tmp-step_000006-{os.getppid()}"  # a running writer's: not ours to remove
    for directory in (stale, live):
        (directory / "part").mkdir(parents=True)
    foreign = run / ".tmp-report.json.x1y2"  # another program's temporary: not a checkpoint's, so kept
    foreign.write_text("{}")
    remove_stale_temporaries(run)  # what the next writer does when it starts (Trainer.fit, under its lock)
    assert not stale.exists()
    assert live.exists() and foreign.exists()
    (stale / "part").mkdir(parents=True)
    tiny_checkpoint(run, Tokenizer.load(world["a"]), 7)  # and so does every save
    assert not stale.exists()
    assert live.exists() and foreign.exists()


# ---- compatibility, checked before any weights are loaded --------------------------------------------


def test_fingerprint_tells_same_size_tokenizers_apart(world):
    a, b = Tokenizer.load(world["a"]), Tokenizer.load(world["b"])
    assert a.vocab_size == b.vocab_size
    assert tokenizer_fingerprint(a) != tokenizer_fingerprint(b)
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(Tokenizer.load(world["a"]))


def test_check_compatible_names_every_difference(tmp_path, world):
    a, b = Tokenizer.load(world["a"]), Tokenizer.load(world["b"])
    path = tiny_checkpoint(tmp_path / "run", a)
    ckpt = open_checkpoint(path)
    check_compatible(ckpt, ckpt.model_config(), a)  # the same model and tokenizer: fine
    other = GPTConfig(**{**ckpt.model_config().to_dict(), "n_layer": 2, "n_embd": 32})
    with pytest.raises(UserError) as error:
        check_compatible(ckpt, other, b)
    message = str(error.value)
    assert "model_config.n_layer: checkpoint 1, now 2" in message
    assert "model_config.n_embd: checkpoint 16, now 32" in message
    assert "tokenizer (sha256" in message


def test_resume_with_another_tokenizer_of_the_same_size_is_refused(world, trained, tmp_path):
    from picochat.pretrain import pretrain

    run = copy_of(trained, tmp_path)
    with pytest.raises(UserError, match="tokenizer"):
        pretrain(config_for(world, run, tokenizer="b", steps=4))


def test_resume_with_another_depth_is_refused_before_loading_weights(world, trained, tmp_path, monkeypatch):
    from picochat.pretrain import pretrain

    run = copy_of(trained, tmp_path)

    def never(*args, **kwargs):
        raise AssertionError("weights were loaded before the compatibility check")

    monkeypatch.setattr(GPT, "load_state_dict", never)
    with pytest.raises(UserError, match="model_config.n_layer: checkpoint 1, now 2"):
        pretrain(config_for(world, run, steps=4, depth=2))


def test_a_tokenizer_smaller_than_the_vocabulary_is_an_error(tmp_path, world):
    small = Tokenizer.load(world["small"])
    path = tiny_checkpoint(tmp_path / "run", small, vocab_size=300)
    with pytest.raises(UserError, match="its tokenizer has 280 tokens but the model's vocabulary has 300"):
        load_model(path)
    code = cli.main(["eval", "--checkpoint", str(path), "--corpus", str(world["corpus"])])
    assert code == 2


def test_a_swapped_tokenizer_directory_is_caught(tmp_path, world):
    path = tiny_checkpoint(tmp_path / "run", Tokenizer.load(world["a"]))
    Tokenizer.load(world["b"]).save(path / "tokenizer")
    with pytest.raises(UserError, match="sha256 recorded in meta.json differs"):
        load_model(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"n_layer": 3}, "does not match its model_config: missing"),
        ({"n_embd": 24}, "has shape"),
        ({"n_layer": "four"}, "model_config.n_layer = 'four' is not a positive whole number"),
        ({"n_head": -1}, "is not a positive whole number"),
        ({"softcap": float("nan")}, "is not a positive finite number"),
        ({"colour": "blue"}, "unknown fields"),
        ({"n_head": 3}, "does not describe a model"),
    ],
)
def test_a_wrong_model_config_is_a_clear_error(tmp_path, world, edit, message):
    path = tiny_checkpoint(tmp_path / "run", Tokenizer.load(world["a"]))
    meta = json.loads((path / "meta.json").read_text())
    meta["model_config"].update(edit)
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=message):
        load_model(path)


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("optimizer.pt", b"not a torch file", "optimizer.pt \\(the optimizer state\\) is damaged"),
        ("rng.pt", b"\x00" * 10, "rng.pt \\(the random-number state\\) is damaged"),
        ("rng.pt", None, "the saved random-number state is damaged"),
        ("optimizer.pt", "missing", "optimizer.pt is missing"),
    ],
)
def test_damaged_optimizer_or_rng_state_is_a_clear_error_on_resume(
    world, trained, tmp_path, name, damage, message
):
    from picochat.pretrain import pretrain

    run = copy_of(trained, tmp_path)
    target = list_checkpoints(run)[-1] / name
    if damage == "missing":
        target.unlink()
    elif damage is None:  # a valid torch file holding the wrong thing
        torch.save({"python": [1, 2]}, target)
    else:
        target.write_bytes(damage)
    with pytest.raises(UserError, match=message):
        pretrain(config_for(world, run, steps=4))


# ---- no destructive defaults -------------------------------------------------------------------------


def test_replacing_a_corpus_needs_force_and_keeps_the_old_one_until_the_new_one_is_whole(capsys, monkeypatch):
    assert cli.main(["data", "synthetic", "--name", "x", "--docs", "20"]) == 0
    from picochat.data.corpus import corpus_dir

    before = snapshot(corpus_dir("x"))
    assert cli.main(["data", "synthetic", "--name", "x", "--docs", "30"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert snapshot(corpus_dir("x")) == before

    import picochat.data.corpus as corpus

    real_write_split = corpus.write_split

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(corpus, "write_split", crash)
    assert cli.main(["data", "synthetic", "--name", "x", "--docs", "30", "--force"]) == 1
    assert snapshot(corpus_dir("x")) == before  # the failed replacement left the old corpus whole
    monkeypatch.setattr(corpus, "write_split", real_write_split)
    assert cli.main(["data", "synthetic", "--name", "x", "--docs", "30", "--force"]) == 0
    assert snapshot(corpus_dir("x")) != before
    assert [p.name for p in corpus_dir("x").parent.iterdir() if p.name.startswith(".")] == []


def test_replacing_a_tokenizer_needs_force_and_never_touches_foreign_files(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat. " * 400 + "\n\n" + "a dog ran far away. " * 400)
    out = tmp_path / "tok"
    train = ["tokenizer", "train", "--input", str(text), "--vocab-size", "280", "--output"]
    assert cli.main([*train, str(out)]) == 0
    before = snapshot(out)
    assert cli.main([*train, str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert snapshot(out) == before
    assert cli.main([*train, str(out), "--force"]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    assert cli.main([*train, str(tmp_path / "mine"), "--force"]) == 2
    assert "not a tokenizer directory" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"


# ---- the CLI never shows a traceback -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("latin1.txt", b"caf\xe9 au lait\n", "not UTF-8 ({path} line 1)"),
        ("bad.jsonl", b'{"text": "fine"}\n{"text": \n', "not valid JSON (first: {path} line 2)"),
        ("binary.jsonl", b'{"text": "fine"}\n\xff\xfe\n', "not UTF-8 (first: {path} line 2)"),
        ("fake.parquet", b"PAR1 not really", "not a readable parquet file"),
    ],
)
def test_tokenizer_inputs_are_checked_naming_file_and_line(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert cli.main(["tokenizer", "train", "--input", str(path), "--vocab-size", "280"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message.format(path=path) in err
    assert "Traceback" not in err


def test_an_unexpected_error_prints_one_line_and_writes_the_trace_to_a_log(
    monkeypatch, capsys, isolated_home
):
    import picochat.commands.data as data_command

    def broken(args):
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(data_command, "run_list", broken)
    assert cli.main(["data", "list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first, second = err.strip().splitlines()
    assert first == "picochat data: internal error: RuntimeError: something nobody expected second line"
    log = Path(second.split("The full trace is in ")[1].split(";")[0])
    assert log.parent == isolated_home / "logs"
    assert "Traceback" in log.read_text() and "something nobody expected" in log.read_text()


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["data", "list"]) == cli.EXIT_BROKEN_PIPE
    assert capsys.readouterr().err == ""


def test_output_piped_into_head_leaves_no_traceback(tmp_path, world):
    env = {**os.environ, "PICOCHAT_HOME": str(tmp_path), "PICOCHAT_NO_TCMALLOC": "1"}
    long_text = "ab " * 30_000  # about a megabyte of output: far more than a pipe holds
    command = [
        sys.executable,
        "-m",
        "picochat",
        "tokenizer",
        "show",
        long_text,
        "--tokenizer",
        str(world["a"]),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout.readline().startswith(b"")  # like `head -n 1`: read a line, then go away
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == cli.EXIT_BROKEN_PIPE
    assert err == ""
