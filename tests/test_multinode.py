"""Two nodes on loopback: two `torchrun --nnodes 2 --nproc_per_node 1` launchers on 127.0.0.1 (gloo, static
rendezvous by --node_rank) train to the weights of one process with two accumulation steps, and resume
together from the last checkpoint after one of them is killed."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from picochat.checkpoint import latest_checkpoint
from picochat.data.corpus import write_synthetic_corpus
from picochat.data.shards import iter_documents
from picochat.tokenizer import Tokenizer

TORCHRUN = Path(sys.executable).parent / "torchrun"
STEPS, KILLED_AFTER = 4, 2
# 512 tokens a step = 4 rows × 64 tokens × 2: two accumulation steps alone, one on each of two nodes
FLAGS = "--preset cpu-tiny --depth 1 --seq-len 64 --device-batch 4 --batch-tokens 512 --warmup-steps 2 "
FLAGS += f"--steps {STEPS} --save-every 2 --keep-last 0 --eval-batches 1 --dtype fp32 --no-compile"
# node 1 is killed (SIGKILL, no clean-up) right after the checkpoint of step KILLED_AFTER
KILL_NODE_1 = f"""
import os, signal, sys
from picochat.training import Trainer
save = Trainer.save
def save_then_die(self):
    save(self)
    if os.environ["RANK"] == "1" and self.step == {KILLED_AFTER}:
        os.kill(os.getpid(), signal.SIGKILL)
Trainer.save = save_then_die
from picochat.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data_flags(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("multinode_data")
    corpus = write_synthetic_corpus(root / "corpus", n_docs=80, seed=5)
    documents = iter_documents(sorted((corpus / "train").glob("*.parquet")))
    Tokenizer.train(list(documents), vocab_size=300).save(root / "tokenizer")
    return ["--corpus", str(corpus), "--tokenizer", str(root / "tokenizer")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(program: list[str], args: list[str], env: dict) -> list[int]:
    """Both nodes' torchrun launchers, as on two machines: the same endpoint, node ranks 0 and 1."""
    port, launchers = free_port(), []
    for node in (0, 1):
        rendezvous = ["--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}"]
        rendezvous += ["--master_addr=127.0.0.1", f"--master_port={port}"]
        command = [str(TORCHRUN), *rendezvous, *program, *args]
        launchers.append(
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        )
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and any(p.poll() is None for p in launchers):
        if any(p.poll() for p in launchers):  # a node failed: the other waits on it, as on real machines
            deadline = min(deadline, time.monotonic() + 10)
        time.sleep(0.5)
    for launcher in launchers:
        if launcher.poll() is None:  # ended as a user would end it
            launcher.send_signal(signal.SIGTERM)
    return [launcher.wait(timeout=30) for launcher in launchers]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None and checkpoint.name.endswith(str(STEPS))
    return load_file(str(checkpoint / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed")
def test_two_nodes_match_one_process_and_resume_together_after_a_kill(data_flags, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PICOCHAT_HOME": str(tmp_path / "home")}
    pretrain = ["pretrain", *FLAGS.split(), *data_flags]
    alone, nodes = tmp_path / "alone", tmp_path / "nodes"
    subprocess.run(
        [sys.executable, "-m", "picochat", *pretrain, "--run-dir", str(alone)], env=env, check=True
    )
    launcher = tmp_path / "kill_node_1.py"
    launcher.write_text(KILL_NODE_1)
    killed = two_nodes([str(launcher)], [*pretrain, "--run-dir", str(nodes)], env)
    assert killed[1] != 0 and latest_checkpoint(nodes).name.endswith(str(KILLED_AFTER))
    assert two_nodes(["-m", "picochat"], [*pretrain, "--run-dir", str(nodes)], env) == [0, 0]
    expected, got = final_weights(alone), final_weights(nodes)
    assert expected.keys() == got.keys()
    for name, weight in expected.items():
        torch.testing.assert_close(got[name], weight, rtol=1e-4, atol=1e-5, msg=name)
