"""The chat suite (`picochat eval chat`): benchmark questions asked the way a user would (docs/evaluation.md):
lettered choices, GSM8K with the calculator, HumanEval and MBPP run in the sandbox, letter counts.
"""

import contextlib
import math
import random
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from picochat.engine import Engine, SamplingParams
from picochat.evaluation.loglik import right_padded
from picochat.runtime import autocast
from picochat.tasks.letter_forms import stated_count
from picochat.tools.sandbox import PythonSandbox
from picochat.wordlists import SUITE_SPELLING_WORDS

LETTERS = "ABCDEFGHIJ"
LETTER_TASKS = ("arc_easy", "arc_challenge", "mmlu")
CODE_TASKS = ("humaneval", "mbpp")
CHAT_TASKS = (*LETTER_TASKS, "gsm8k", *CODE_TASKS, "spelling")
MAX_TOKENS = {"gsm8k": 256, "humaneval": 384, "mbpp": 384, "spelling": 64}


def lettered_prompt(problem: dict) -> str:
    lines = [problem["question"], ""]
    lines += [f"{LETTERS[j]}. {choice}" for j, choice in enumerate(problem["choices"])]
    lines += ["", "Answer with the letter of the correct choice."]
    return "\n".join(lines)


def user_prompt(task: str, problem: dict) -> str:
    if task in LETTER_TASKS:
        return lettered_prompt(problem)
    if task == "humaneval":
        return f"Complete this Python function.\n\n```python\n{problem['prompt']}```"
    if task == "mbpp":
        return f"{problem['prompt']}\nWrite the Python code in a ```python code block."
    return problem["question"]  # gsm8k, spelling


_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def _to_number(text: str) -> float | None:
    with contextlib.suppress(ValueError):
        return float(text.replace("$", "").replace(",", "").rstrip("."))
    return None


def extract_answer(text: str) -> float | None:
    """The number after the last '####' (GSM8K's answer mark), else the last number in the text."""
    if "####" in text:
        found = _NUMBER.search(text.rsplit("####", 1)[1])
        if found:
            return _to_number(found.group())
    numbers = _NUMBER.findall(text)
    return _to_number(numbers[-1]) if numbers else None


def answer_matches(reply: str, reference: str, task: str = "gsm8k") -> bool:
    """Whether the reply's number is the reference; a letter count is the N of "appears N times" if stated."""
    count = stated_count(reply) if task == "spelling" else None
    got = extract_answer(reply) if count is None else float(count)
    want = _to_number(reference)
    return got is not None and want is not None and abs(got - want) < 1e-6 * max(1.0, abs(want))


def extract_code(reply: str) -> str:
    block = re.search(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|\Z)", reply, re.DOTALL)
    return block.group(1) if block else reply


def program_for(task: str, problem: dict, code: str) -> str:
    """The solution, then the tests; HumanEval's prompt first, so that a reply of only the body is whole."""
    if task == "humaneval":
        defines = re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.MULTILINE)
        head = problem["prompt"] + ("\n" if defines else "")
        return f"{head}{code}\n\n{problem['test']}"
    return f"{code}\n\n{problem['test']}"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed: 1 − C(n−c, k) / C(n, k) (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def spelling_problems(count: int = 200, seed: int = 0) -> list[dict]:
    rng = random.Random(f"spelling-eval-{seed}")
    problems = []
    for i in range(count):
        word = rng.choice(SUITE_SPELLING_WORDS)
        letter = rng.choice(word) if rng.random() < 0.85 else rng.choice("abcdefghijklmnopqrstuvwxyz")
        question = f'How many times does the letter "{letter}" appear in "{word}"?'
        problems.append({"id": str(i), "question": question, "answer": str(word.count(letter))})
    return problems


@torch.no_grad()
def letter_choices(model, tokenizer, problems: list[dict], device, dtype) -> list[int]:
    render = tokenizer.render_for_completion
    # a prompt longer than the model's positions keeps its end (the question and the "Answer:" cue)
    prompts = [
        render([{"role": "user", "content": lettered_prompt(p)}])[-model.config.rope_len :] for p in problems
    ]
    letter_ids = [tokenizer.encode(letter)[0] for letter in LETTERS]
    inputs = right_padded(prompts, max(len(p) for p in prompts))  # (B, T)
    last = torch.tensor([len(p) - 1 for p in prompts], device=device)
    with autocast(device, dtype):
        logits = model(inputs.to(device), logits_at=last)[:, 0].float()  # (B, V)
    choices = [torch.tensor(letter_ids[: len(p["choices"])], device=device) for p in problems]
    return [int(logits[b, ids].argmax()) for b, ids in enumerate(choices)]


def run_programs(programs: list[str], timeout_s: float, workers: int = 4) -> list[bool]:
    sandbox = PythonSandbox(timeout_s=timeout_s, memory_mb=512)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [result.ok for result in pool.map(sandbox.run, programs)]


def in_chunks(indices: list[int], size: int, on_batch=None) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        chunk = indices[start : start + size]
        yield chunk
        if on_batch:
            on_batch(len(chunk))


def evaluate_chat_task(
    engine, task, problems, indices, batch_size=16, samples=1, temperature=0.8, timeout_s=10.0, on_batch=None
) -> dict[int, dict]:
    """Outcomes {index: {"score": float, "passed": c, "samples": n}} for problems `indices` of a chat task."""
    outcomes: dict[int, dict] = {}
    if task in LETTER_TASKS:
        for chunk in in_chunks(indices, batch_size, on_batch):
            chosen = [problems[i] for i in chunk]
            picks = letter_choices(engine.model, engine.tokenizer, chosen, engine.device, engine.dtype)
            for i, pick in zip(chunk, picks):
                right = float(pick == problems[i]["answer"])
                outcomes[i] = {"score": right, "passed": int(right), "samples": 1}
        return outcomes
    tool = "calculator" if task == "gsm8k" else None
    if (engine.tool is None) != (tool is None):
        engine = Engine(engine.model, engine.tokenizer, tool=tool, compile=engine.compile)
    # Greedy rows do not depend on their neighbours, so problems share batches; sampled problems each get one
    # call of `samples` rows seeded by the problem's index, so the draws do not depend on the batching.
    for chunk in in_chunks(indices, batch_size if samples == 1 else 1, on_batch):
        asked = [problems[i] for i in chunk for _ in range(samples)]
        draw_temperature, seed = (0.0, None) if samples == 1 else (temperature, chunk[0])
        params = SamplingParams(max_tokens=MAX_TOKENS[task], temperature=draw_temperature, seed=seed)
        passed = check_replies(task, asked, generate_replies(engine, task, asked, params), timeout_s)
        for k, i in enumerate(chunk):
            c = sum(passed[k * samples : (k + 1) * samples])
            outcomes[i] = {"score": c / samples, "passed": c, "samples": samples}
    return outcomes


def generate_replies(engine, task: str, problems: list[dict], params: SamplingParams) -> list[str]:
    """One reply per problem; "" (wrong, not run) where the prompt leaves no room for it."""
    render = engine.tokenizer.render_for_completion
    prompts = [render([{"role": "user", "content": user_prompt(task, p)}]) for p in problems]
    fits = [len(prompt) <= engine.model.config.rope_len - MAX_TOKENS[task] for prompt in prompts]
    generated = iter(engine.generate([p for p, ok in zip(prompts, fits) if ok], params) if any(fits) else [])
    return [next(generated).text if ok else "" for ok in fits]


def check_replies(task: str, problems: list[dict], replies: list[str], timeout_s: float) -> list[bool]:
    if task in CODE_TASKS:
        programs = [program_for(task, p, extract_code(reply)) for p, reply in zip(problems, replies)]
        return run_programs(programs, timeout_s)
    return [answer_matches(reply, p["answer"], task) for p, reply in zip(problems, replies)]
