"""Nothing destroyed that the command did not make, and files as the umask says (docs/reliability.md).

Each test replays a scenario that lost work or hid files from a second user: another preset's tokenizer,
`--no-resume` in a run directory with checkpoints, `--force` on a folder that is not a corpus,
`--overwrite` onto checkpoints or a live run, artifacts written 0600.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from picochat import cli
from picochat.checkpoint import CheckpointMeta, save_checkpoint
from picochat.data.corpus import write_synthetic_corpus
from picochat.data.shards import iter_documents
from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.rundir import LOCK_FILE
from picochat.tokenizer import Tokenizer

TINY = dict(depth=1, seq_len=32, device_batch=2, batch_tokens=128, warmup_steps=1, eval_batches=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_loss")
    corpus = write_synthetic_corpus(root / "corpus", n_docs=60, seed=5)
    docs = list(iter_documents(sorted((corpus / "train").glob("*.parquet"))))
    Tokenizer.train(docs, vocab_size=300).save(root / "tok")
    return {"corpus": corpus, "tokenizer": root / "tok"}


def pretrain_tiny(world, run_dir: Path, **overrides):
    from picochat.pretrain import preset_config, pretrain

    settings = {**TINY, "steps": 2, "save_every": 1, **overrides}
    config = preset_config(
        "cpu-tiny", corpus=world["corpus"], tokenizer=world["tokenizer"], run_dir=run_dir, **settings
    )
    return pretrain(config)


def tiny_checkpoint(run_dir: Path, tokenizer, step: int = 1, **meta) -> Path:
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, seq_len=16, n_layer=1, n_head=1, n_kv_head=1, n_embd=16
    )
    return save_checkpoint(
        run_dir, GPT(config), CheckpointMeta(step=step, **meta), tokenizer=tokenizer, keep=None
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes but the writer lock's (taking the lock to refuse a directory may create it)."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_FILE]
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def modes(root: Path) -> dict[Path, tuple[bool, int]]:
    return {p: (p.is_dir(), stat.S_IMODE(p.stat().st_mode)) for p in sorted(root.rglob("*"))}


# ---- files as the umask says -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_everything_a_run_writes_has_the_umasks_mode(world, tmp_path, umask):
    from picochat.data.corpus import source_dir
    from picochat.data.fetch import unpack
    from picochat.hf import export_checkpoint

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text(" ".join(["A sentence of the user's own notes."] * 40))
    with tarfile.open(tmp_path / "source.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "notes", arcname="notes")
    old = os.umask(umask)
    try:
        source_dir("a-package").parent.mkdir(parents=True)
        unpack(tmp_path / "source.tar.gz", source_dir("a-package"))  # as `data fetch` unpacks a source
        assert cli.main(["data", "build", "--input", str(tmp_path / "notes"), "--name", "mine"]) == 0
        pretrain_tiny(world, tmp_path / "out" / "run")
        export_checkpoint(tmp_path / "out" / "run", tmp_path / "out" / "hf")
    finally:
        os.umask(old)
    written = modes(tmp_path / "out") | modes(Path(os.environ["PICOCHAT_HOME"]) / "data")
    unpacked = source_dir("a-package")  # what is inside keeps the modes the package's archive gives it
    written = {p: mode for p, mode in written.items() if unpacked not in p.parents}
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    names = {path.name for path in written}
    kinds = {"model.safetensors", "optimizer.pt", "rng.pt", "meta.json", "ranks.tiktoken", "metrics.jsonl"}
    assert (
        kinds | {"manifest.json", "config.json", "shard_00000.parquet", "tokenizer.json", "a-package"}
        <= names
    )
    wrong = {
        str(p): oct(mode)
        for p, (is_dir, mode) in written.items()
        if mode != (dir_mode if is_dir else file_mode)
    }
    assert wrong == {}


def test_a_permission_problem_is_named_as_one(world, tmp_path, monkeypatch):
    from picochat.checkpoint import resolve_checkpoint
    from picochat.data.shards import validate_shard

    tiny_checkpoint(tmp_path / "run", Tokenizer.load(world["tokenizer"]))
    real_read_text = Path.read_text

    def denied(path, *args, **kwargs):
        if path.name == "meta.json":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(UserError, match="meta.json: permission denied"):
        resolve_checkpoint(tmp_path / "run")  # not "no complete checkpoint ... train one first"
    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "ParquetFile", lambda path: denied(Path("meta.json")))
    with pytest.raises(UserError, match="permission denied") as error:
        validate_shard(next((world["corpus"] / "train").glob("*.parquet")))
    assert "delete" not in str(error.value)


# ---- --force replaces only a corpus picochat built ---------------------------------------------------


@pytest.mark.parametrize("name", ["mine", "sources"])
def test_force_never_deletes_inputs_or_downloaded_sources(name, capsys):
    data = Path(os.environ["PICOCHAT_HOME"]) / "data"
    (data / "mine").mkdir(parents=True)
    (data / "mine" / "notes.txt").write_text("My own notes, which no command made. " * 20)
    (data / "sources" / "simplewiki").mkdir(parents=True)
    (data / "sources" / "simplewiki" / "fetched.json").write_text("{}")
    before = snapshot(data)
    command = ["data", "build", "--input", str(data / "mine"), "--name", name, "--force"]
    assert cli.main(command) == 2
    error = capsys.readouterr().err
    assert f"{data / name} holds" in error and "choose another --name" in error
    assert cli.main(["data", "synthetic", "--name", name, "--docs", "5", "--force"]) == 2
    assert snapshot(data) == before
    assert cli.main(["data", "synthetic", "--name", "built", "--docs", "5"]) == 0
    assert (
        cli.main(["data", "synthetic", "--name", "built", "--docs", "6", "--force"]) == 0
    )  # a corpus: replaced


# ---- --overwrite replaces only what export or import made --------------------------------------------

HOLD_LOCK = "import sys, time; from picochat.rundir import RunDirLock\n" \
            "lock = RunDirLock(sys.argv[1]); lock.acquire(); print('locked', flush=True); time.sleep(60)"  # fmt: skip


@pytest.fixture
def live_run(tmp_path):
    """A run directory whose writer lock another process holds, as a training run does."""
    (tmp_path / "live").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "live")], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    yield tmp_path / "live"
    holder.kill()
    holder.wait()


def test_overwrite_never_destroys_checkpoints_or_a_live_run(world, tmp_path, live_run, capsys):
    tokenizer = Tokenizer.load(world["tokenizer"])
    run = tiny_checkpoint(tmp_path / "run", tokenizer, step=200).parent
    (live_run / "metrics.jsonl").write_text('{"step": 1}\n')
    home_files = tmp_path / "mine"
    (home_files / "thesis.txt").parent.mkdir()
    (home_files / "thesis.txt").write_text("chapter one")
    before = {path: snapshot(path) for path in (run, live_run, home_files)}
    for destination, message in [(run, "holds a checkpoint"), (tmp_path, "holds a checkpoint"),
                                 (live_run, "is in use by process"), (home_files, "not an earlier export")]:  # fmt: skip
        assert cli.main(["export", str(run), str(destination), "--overwrite"]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["export", str(run), str(tmp_path / "hf")]) == 0
    assert cli.main(["export", str(run), str(tmp_path / "hf"), "--overwrite"]) == 0  # an export: replaced
    assert cli.main(["import", str(tmp_path / "hf"), "--out", str(run), "--overwrite"]) == 2
    assert "checkpoints of a training run (step_000200)" in capsys.readouterr().err
    assert cli.main(["import", str(tmp_path / "hf"), "--out", str(live_run), "--overwrite"]) == 2
    assert "is in use by process" in capsys.readouterr().err
    assert {path: snapshot(path) for path in before} == before


# ---- --no-resume: a new run beside the old one ---------------------------------------------------------


def test_no_resume_starts_a_new_run_and_never_prunes_the_old_one(world, tmp_path, capsys):
    from picochat.checkpoint import latest_checkpoint, list_checkpoints, read_meta

    run = tmp_path / "run"
    old = tiny_checkpoint(run, Tokenizer.load(world["tokenizer"]), step=200)
    (run / "metrics.jsonl").write_text('{"step": 200, "loss": 3.0}\n')
    before = snapshot(run)
    pretrain_tiny(world, run, resume="never", keep_last=1)
    aside = run / "previous-1"
    assert "earlier one's checkpoints are in" in capsys.readouterr().out
    assert snapshot(aside) == before  # the old run whole, its log included
    assert [p.name for p in list_checkpoints(run)] == ["step_000002"] and latest_checkpoint(
        run
    ).name != old.name
    logged = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"step": 200' in line]
    assert logged == [] and read_meta(latest_checkpoint(run)).step == 2


def test_sft_on_its_own_base_directory_with_no_resume_keeps_both(world, tmp_path):
    from picochat.checkpoint import list_checkpoints
    from picochat.settings import SFTConfig, resolve
    from picochat.sft import sft

    run = tmp_path / "run"
    tiny_checkpoint(run, Tokenizer.load(world["tokenizer"]), step=200)
    before = snapshot(run)
    settings = dict(base=run, run_dir=run, resume="never", mix="identity", seq_len=32, keep_last=1)
    sft(resolve(SFTConfig, [settings | dict(device_batch=2, batch_tokens=64, steps=2, eval_batches=1)]))
    assert snapshot(run / "previous-1") == before
    assert [p.name for p in list_checkpoints(run)] == ["step_000002"]


# ---- picochat run: another preset's tokenizer and checkpoints ----------------------------------------


class Trained(Exception):
    """Raised by a stand-in training stage once it has the configuration the pipeline gave it."""


def test_a_run_of_another_preset_refuses_to_replace_the_tokenizer_then_force_keeps_the_old_run(
    world, monkeypatch, capsys
):
    from picochat import pipeline, settings
    from picochat.paths import checkpoints_dir, tokenizer_dir

    other = Tokenizer.load(world["tokenizer"])  # 300 tokens: another preset's, not cpu-tiny's
    other.save(tokenizer_dir())
    for stage in ("base", "sft"):
        tiny_checkpoint(checkpoints_dir() / stage, other, step=200, total_steps=200, last_eval={"bpb": 1.0})
    tiny = settings.RUN_PRESETS["cpu-tiny"]
    monkeypatch.setitem(
        settings.RUN_PRESETS, "cpu-tiny", replace(tiny, vocab_size=280, tokenizer_chars=30_000)
    )
    tokenizer_before, checkpoints_before = snapshot(tokenizer_dir()), snapshot(checkpoints_dir())
    assert cli.main(["run", "--preset", "cpu-tiny"]) == 2
    error = capsys.readouterr().err
    assert (
        f"{tokenizer_dir()} holds a 300-token tokenizer" in error
        and "needs 280" in error
        and "--force" in error
    )
    assert snapshot(tokenizer_dir()) == tokenizer_before and snapshot(checkpoints_dir()) == checkpoints_before

    given = {}

    def stand_in(config):
        given["resume"] = config.train.resume
        raise Trained

    monkeypatch.setitem(pipeline.STAGES, "pretrain", (*pipeline.STAGES["pretrain"][:2], stand_in))
    with pytest.raises(Trained):
        pipeline.run_pipeline("cpu-tiny", force=True)
    assert Tokenizer.load(tokenizer_dir()).vocab_size == 280  # replaced, as asked
    assert given == {"resume": "never"}  # a new base model beside the old one, not "trained; skipping"
    assert snapshot(checkpoints_dir()) == checkpoints_before  # the trainer moves them at its first save
    assert cli.main(["run", "--preset", "cpu-tiny"]) == 2  # without --force: the old checkpoints stay
    assert "base model trained with another tokenizer" in capsys.readouterr().err
