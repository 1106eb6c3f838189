"""Hugging Face interop (docs/hf.md): `export_checkpoint` writes a picochat checkpoint as a transformers
`nanochat` folder (config, weights under their own names, tokenizer files, a chat template that renders as
`render_conversation` does, a model card), `import_folder` reads one back, `push_to_hub` uploads it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from string import Template

import huggingface_hub
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, processors

from picochat.atomic import atomic_directory, save_tensors
from picochat.checkpoint import (
    META,
    CheckpointMeta,
    check_weights,
    list_checkpoints,
    load_model,
    read_meta,
    resolve_checkpoint,
    save_checkpoint,
)
from picochat.engine import TOOL_ON_SCREEN, Engine, SamplingParams
from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.paths import reports_dir
from picochat.rundir import LOCK_FILE, RunDirLock
from picochat.tokenizer import SPECIAL_TOKENS, Tokenizer
from picochat.tokenizer.chat import render_conversation
from picochat.tokenizer.storage import byte_to_unicode, huggingface_json

EXTRA_HINT = "pip install 'picochat[hf]'"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PAD_TOKEN = "<|bos|>"  # picochat has no pad token; <|bos|> is never a training label in a conversation
EOS_TOKEN = "<|assistant_end|>"
STOP_TOKENS = ("<|assistant_end|>", "<|bos|>")  # as picochat.engine.STOP_TOKENS: end of reply, new document
CHAT_DEFAULTS = {"do_sample": True, "temperature": 0.6, "top_k": 50}  # as `picochat chat`
# A tool call decoded as `picochat chat` shows it, with the spaces the chat adds by context always there:
# also where skip_special_tokens=True would drop the markers, call, output and reply stay apart
DECODED_TOOL_MARKERS = TOOL_ON_SCREEN | {"<|python_start|>": " [tool: ", "<|output_end|>": "] "}
# GPTConfig's fields that are NanoChatConfig's under another name
HF_NAMES = {
    "vocab_size": "vocab_size",
    "n_layer": "num_hidden_layers",
    "n_head": "num_attention_heads",
    "n_kv_head": "num_key_value_heads",
    "n_embd": "hidden_size",
    "softcap": "final_logit_softcapping",
    "norm_eps": "rms_norm_eps",
}
# picochat's chat format in Jinja, the language of Hugging Face chat templates
CHAT_TEMPLATE = (Path(__file__).parent / "hf_chat_template.jinja").read_text(encoding="utf-8")


def require_transformers():
    try:
        import transformers
    except ImportError:
        raise UserError(f"Hugging Face export and import need transformers: {EXTRA_HINT}") from None
    if not hasattr(transformers, "NanoChatConfig"):
        raise UserError(
            f"transformers {transformers.__version__} has no nanochat architecture; "
            f"upgrade it: {EXTRA_HINT} --upgrade"
        )
    return transformers


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing: a Hugging Face model folder needs it")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path} must hold a JSON object")
    return payload


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_checkpoint(checkpoint: Path, out_dir: Path, dtype: str = "fp32", overwrite: bool = False) -> Path:
    """Write `out_dir` (atomically) from a picochat checkpoint or run directory; return `out_dir`."""
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite)
    path = resolve_checkpoint(checkpoint)
    model, tokenizer, meta = load_model(path)
    config = model.config
    if config.options:  # no exact counterpart in transformers' `nanochat`: refused, not approximated
        raise UserError(
            f"{path} uses model options transformers' nanochat architecture cannot express: "
            f"{', '.join(config.options)}; only a model trained without them can be exported"
        )
    require_transformers()
    # what transformers does not need but a re-import does: the training context, the step
    header = {"model_config": config.to_dict(), "step": meta.step, "stage": path.parent.name}
    with RunDirLock(out_dir, enabled=out_dir.is_dir()), atomic_directory(out_dir) as tmp:
        write_json(tmp / "config.json", hf_config(config, tokenizer, dtype))
        save_tensors(
            hf_state_dict(model, dtype), tmp / WEIGHTS_FILE, {"format": "pt", "picochat": json.dumps(header)}
        )
        (tmp / "tokenizer.json").write_text(tokenizer_json(tokenizer), encoding="utf-8")
        write_json(tmp / "tokenizer_config.json", tokenizer_config(tokenizer, config.seq_len))
        write_json(tmp / "generation_config.json", generation_config(tokenizer))
        (tmp / "README.md").write_text(model_card(model, tokenizer, meta, path, dtype), encoding="utf-8")
        check_template(tmp, tokenizer)
    return out_dir


def check_destination(out_dir: Path, overwrite: bool) -> None:
    """Refuse an `out_dir` the export would destroy: one not empty, unless --overwrite and an earlier export."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; give a directory to export into")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise UserError(f"{out_dir} exists and is not empty; choose a new directory or pass --overwrite")
    with RunDirLock(out_dir, enabled=(out_dir / LOCK_FILE).exists()):  # refused while a live run holds it
        pass
    if checkpoint := next(out_dir.rglob(META), None):
        raise UserError(f"{out_dir} holds a checkpoint ({checkpoint.parent}); export to another directory")
    if not (out_dir / "config.json").is_file():
        raise UserError(f"{out_dir} is not an earlier export (no config.json); --overwrite replaces only one")


def hf_config(config: GPTConfig, tokenizer: Tokenizer, dtype: str = "fp32") -> dict:
    """config.json: picochat's GPTConfig as a transformers NanoChatConfig (validated by transformers)."""
    transformers = require_transformers()
    fields = {theirs: getattr(config, ours) for ours, theirs in HF_NAMES.items()} | {
        "intermediate_size": config.mlp_ratio * config.n_embd,
        "max_position_embeddings": config.seq_len,  # the context it was trained for
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_base},
        "hidden_act": "relu2",
        "attention_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.special_id(EOS_TOKEN),
        "pad_token_id": tokenizer.special_id(PAD_TOKEN),
        "architectures": ["NanoChatForCausalLM"],
        "dtype": str(DTYPES[dtype]).removeprefix("torch."),
    }
    hf = transformers.NanoChatConfig(**fields)  # transformers checks every field's type
    # every field set here, even where it is the default, and what transformers adds; not generic defaults
    keep = set(fields) | set(hf.to_diff_dict())
    return {key: value for key, value in hf.to_dict().items() if key in keep}


def hf_state_dict(model: GPT, dtype: str = "fp32") -> dict[str, torch.Tensor]:
    state = {name: t.detach().to("cpu", DTYPES[dtype]).contiguous() for name, t in model.state_dict().items()}
    return {(name if name == "lm_head.weight" else f"model.{name}"): t for name, t in state.items()}


def tokenizer_json(tokenizer: Tokenizer) -> str:
    """tokenizer.json: picochat's byte-level BPE, plus a post-processor that prepends <|bos|> to plain text
    (picochat trains on <|bos|>-prefixed documents); chat templates are encoded without it."""
    spec = json.loads(huggingface_json(tokenizer.ranks, tokenizer.special_tokens, tokenizer.pattern))
    for token in spec["added_tokens"]:  # the tool markers are content, not markup to skip
        token["special"] = token["content"] not in DECODED_TOOL_MARKERS
    hf = HFTokenizer.from_str(json.dumps(spec))
    replaced = [decoders.Replace(marker, shown) for marker, shown in DECODED_TOOL_MARKERS.items()]
    hf.decoder = decoders.Sequence([*replaced, hf.decoder])
    bos = ("<|bos|>", tokenizer.bos_id)
    hf.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[bos]
    )
    return hf.to_str(pretty=False)


def tokenizer_config(tokenizer: Tokenizer, max_length: int) -> dict:
    special = dict.fromkeys(("lstrip", "rstrip", "normalized", "single_word"), False) | {"special": True}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(token_id): {"content": token, **special, "special": token not in DECODED_TOOL_MARKERS}
            for token, token_id in tokenizer.special_tokens.items()
        },
        "chat_template": CHAT_TEMPLATE,
    }


def generation_config(tokenizer: Tokenizer) -> dict:
    return {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": [tokenizer.special_id(token) for token in STOP_TOKENS],
        "pad_token_id": tokenizer.special_id(PAD_TOKEN),
        **CHAT_DEFAULTS,
    }


SAMPLE_CALL = {"id": "a", "function": {"name": "calculator", "arguments": {"expression": "12*7"}}}
SAMPLE_CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 12*7?"},
    {"role": "assistant", "content": "Let me compute.", "tool_calls": [SAMPLE_CALL]},
    {"role": "tool", "tool_call_id": "a", "content": "84"},
    {"role": "assistant", "content": "It is 84."},
    {"role": "user", "content": "Thanks!"},
]


def check_template(folder: Path, tokenizer: Tokenizer) -> None:
    """Load the folder's tokenizer with transformers and check a sample conversation renders as picochat's."""
    transformers = require_transformers()
    theirs = chat_template_ids(transformers.AutoTokenizer.from_pretrained(str(folder)), SAMPLE_CONVERSATION)
    if theirs != render_conversation(tokenizer, SAMPLE_CONVERSATION)[0]:
        raise UserError(
            f"the exported chat template does not render like picochat with transformers "
            f"{transformers.__version__}; please report this"
        )


def chat_template_ids(hf_tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
    ids = hf_tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, return_dict=False
    )
    return list(ids)


# README.md of an exported folder; $names are filled in by `model_card`
MODEL_CARD = Template((Path(__file__).parent / "hf_model_card.md").read_text(encoding="utf-8"))
SNIPPET_TOKENS = 24
BASE_PROMPTS = ("The capital of France is", "Once upon a time", "def add(a, b):")
CHAT_PROMPTS = ("What is 12*7?", "Who are you?", "How many r are in strawberry?")
BASE_USE = """from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(PATH)
model = AutoModelForCausalLM.from_pretrained(PATH)
ids = tokenizer("The capital of France is", return_tensors="pt")  # <|bos|> is prepended
out = model.generate(**ids, max_new_tokens=24, do_sample=False)
print(tokenizer.decode(out[0, ids["input_ids"].shape[1]:]))"""
CHAT_USE = """from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(PATH)
model = AutoModelForCausalLM.from_pretrained(PATH)
messages = [{"role": "user", "content": "What is 12*7?"}]
ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
out = model.generate(**ids, max_new_tokens=64, do_sample=False)
print(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))"""


def is_chat_model(meta: CheckpointMeta, path: Path) -> bool:
    """Fine-tuned on conversations: an SFT (or RL) run, which records its task mixture."""
    return "mix" in meta.config or path.parent.name in ("sft", "rl")


def model_card(model: GPT, tokenizer: Tokenizer, meta: CheckpointMeta, path: Path, dtype: str) -> str:
    config, chat = model.config, is_chat_model(meta, path)
    summary = (
        "A small chat model: a base model fine-tuned on conversations to answer in picochat's chat format."
        if chat
        else "A small **base** (pretrained) language model: it continues text. It was not fine-tuned to "
        "follow instructions or to chat, so give it the start of a text, not a question."
    )
    limitation = "" if chat else "- A base model: asked a question, it goes on writing rather than answering."
    return MODEL_CARD.substitute(
        config.to_dict(),
        stage=path.parent.name,
        step=meta.step,
        parameters=f"{model.num_params():,}",
        dtype=dtype,
        summary=summary,
        training=card_training(meta),
        tokens=f"{trained_tokens(meta):,}" if trained_tokens(meta) else "an unrecorded number of",
        settings=card_settings(meta.config),
        evaluation=card_evaluation(meta.last_eval, evaluation_reports(path)),
        limitation=limitation,
        use=CHAT_USE if chat else BASE_USE,
        snippet_tokens=SNIPPET_TOKENS,
        snippets=greedy_snippets(model, tokenizer, chat),
    )


def trained_tokens(meta: CheckpointMeta) -> int:
    """Tokens this stage trained on: steps × tokens per optimizer step (0 when not recorded)."""
    return meta.step * int(meta.config.get("batch_tokens") or 0)


def card_training(meta: CheckpointMeta) -> str:
    config = meta.config
    if not config:
        origin = f" (imported from {Path(meta.imported_from).name})" if meta.imported_from else ""
        return f"No training settings were recorded with this checkpoint{origin}."
    if config.get("mix"):
        data = f"conversations of the task mixture `{config['mix']}`, starting from a pretrained model"
    else:
        data = f"the text corpus `{Path(str(config.get('corpus', '?'))).name}`"
        if config.get("chat_share"):
            data += f", with a share {config['chat_share']} of conversations (`{config.get('chat_mix')}`)"
    rows = [["data", data], ["steps", f"{meta.step} of {meta.total_steps or '?'}"]]
    rows += [["tokens per step", config.get("batch_tokens")], ["tokens seen", f"{trained_tokens(meta):,}"]]
    rows += [["sequence length", config.get("seq_len")], ["schedule", config.get("schedule")]]
    return "\n".join(markdown_table(["setting", "value"], rows))


def greedy_snippets(model: GPT, tokenizer: Tokenizer, chat: bool) -> str:
    """The model's greedy continuations of a few fixed prompts, as a table."""
    engine = Engine(model, tokenizer, tool="calculator" if chat else None, compile=False)
    if chat:
        prompts = [tokenizer.render_for_completion([{"role": "user", "content": p}]) for p in CHAT_PROMPTS]
    else:
        prompts = [tokenizer.encode(p, prepend=tokenizer.bos_id) for p in BASE_PROMPTS]
    replies = engine.generate(prompts, SamplingParams(max_tokens=SNIPPET_TOKENS, temperature=0.0))
    rows = [[f"`{p!r}`", f"`{r.text!r}`"] for p, r in zip(CHAT_PROMPTS if chat else BASE_PROMPTS, replies)]
    return "\n".join(markdown_table(["prompt", "greedy reply" if chat else "greedy continuation"], rows))


def card_settings(settings: dict) -> str:
    """The training settings as JSON; local paths are left out: they say nothing and may name the user."""
    shown = {k: v for k, v in settings.items() if not (isinstance(v, str) and ("/" in v or v[:1] == "~"))}
    if not shown:
        return ""
    shown = json.dumps(shown, indent=1, default=str)
    return f"\nTraining settings (local paths left out):\n\n```json\n{shown}\n```\n"


def card_evaluation(last_eval: dict, reports: list[dict]) -> str:
    """The checkpoint's last validation and every `picochat eval` suite report of its stage, as tables."""
    lines = []
    if last_eval:
        lines += [f"Validation at step {last_eval.get('step', '?')}:", ""]
        lines += markdown_table(["metric", "value"], [[k, v] for k, v in last_eval.items() if k != "step"])
    for report in reports:
        core = f", CORE {cell(report['core'])}" if report.get("core") is not None else ""
        if core and report.get("core_tasks"):
            n, missing = report["core_tasks"], report.get("core_missing") or []
            core += f" over {n} of CORE's {n + len(missing)} tasks (not run: {', '.join(missing)})"
        lines += [f"`picochat eval` {report.get('suite')} suite at step {report.get('step', '?')}{core}:", ""]
        columns = [
            "scoring",
            "rule",
            "shots",
            "mean_shots_used",
            "accuracy",
            "stderr",
            "n",
            "chance",
            "centered",
        ]
        rows = [[task, *map(result.get, columns)] for task, result in sorted(report["tasks"].items())]
        header = ["task", "scoring", "rule", "shots", "shots used (mean)", "accuracy", "± stderr", "n"]
        lines += markdown_table([*header, "random baseline", "centred"], rows)
    return "\n".join(lines).rstrip() or "No evaluation was recorded for this checkpoint."


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(map(cell, line)) + " |" for line in [header, *rows]]
    return [lines[0], "|" + "---|" * len(header), *lines[1:], ""]


def cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value)


def evaluation_reports(checkpoint_path: Path) -> list[dict]:
    """$PICOCHAT_HOME/reports/eval_<suite>_<stage>.json for this checkpoint's stage (run-dir name)."""
    stage = checkpoint_path.parent.name
    reports = []
    for path in sorted(reports_dir().glob(f"eval_*_{stage}.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a report being written or damaged: the card goes without it
        tasks = report.get("tasks") if isinstance(report, dict) else None
        ok = isinstance(tasks, dict) and all(isinstance(result, dict) for result in tasks.values())
        if ok and report.get("stage", stage) == stage and path.stem == f"eval_{report.get('suite')}_{stage}":
            reports.append(report)
    return reports


def push_to_hub(folder: Path, repo: str, private: bool = False) -> str:
    """Upload an exported folder to the Hub repository `repo` (created if missing); return its URL."""
    api = huggingface_hub.HfApi()
    try:
        url = api.create_repo(repo_id=repo, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder), repo_id=repo, repo_type="model", commit_message="Upload picochat model"
        )
    except Exception as error:  # network, authentication, a bad repo name: the hub client's own message
        raise UserError(f"could not push {folder} to the Hub repository {repo!r}: {error}") from error
    return str(url)


def import_folder(hf_dir: Path, run_dir: Path, overwrite: bool = False) -> Path:
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise UserError(f"{hf_dir} is not a directory; give a folder with config.json and model.safetensors")
    config, tied = read_config(hf_dir)
    tokenizer = read_tokenizer(hf_dir)
    if tokenizer.vocab_size > config.vocab_size:
        raise UserError(
            f"{hf_dir}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{config.vocab_size} embeddings"
        )
    state = read_weights(hf_dir, config, tied)
    run_dir = Path(run_dir)
    model = GPT(config)
    model.load_state_dict(state)
    step = int(picochat_header(hf_dir).get("step") or 0)
    meta = CheckpointMeta(step=step, imported_from=str(hf_dir.resolve()))
    with RunDirLock(run_dir):  # a live run's directory is refused
        earlier = list_checkpoints(run_dir, quiet=True)
        if earlier and not overwrite:
            raise UserError(f"{run_dir} already holds checkpoints; choose another --out or pass --overwrite")
        if trained := [p for p in earlier if read_meta(p).imported_from is None]:
            raise UserError(f"{run_dir} holds checkpoints of a training run ({trained[-1].name}); --overwrite "
                            "replaces only an earlier import: choose another --out")  # fmt: skip
        saved = save_checkpoint(run_dir, model, meta, tokenizer=tokenizer, keep=None)
        for old in earlier:  # with --overwrite: the import is the run's only one
            if old != saved:
                shutil.rmtree(old, ignore_errors=True)
    return saved


def picochat_header(hf_dir: Path) -> dict:
    """The picochat entry of the safetensors header, if this folder was exported by picochat."""
    try:
        with safe_open(str(hf_dir / WEIGHTS_FILE), framework="pt") as f:
            metadata = f.metadata() or {}
        return json.loads(metadata.get("picochat", "{}"))
    except Exception:  # no file, a sharded folder, a damaged header: read_weights reports those
        return {}


def unsupported(path: Path, field: str, value, why: str) -> UserError:
    return UserError(f"{path}: {field} = {value!r} is not supported by picochat's model ({why})")


def read_config(hf_dir: Path) -> tuple[GPTConfig, bool]:
    """The folder's config.json as a picochat GPTConfig, and whether the head is tied to the embedding."""
    path = hf_dir / "config.json"
    model_type = read_json(path).get("model_type")
    if model_type != "nanochat":
        raise UserError(
            f"{path}: model_type is {model_type!r}; picochat imports only the 'nanochat' architecture"
        )
    transformers = require_transformers()
    try:
        hf = transformers.AutoConfig.from_pretrained(str(hf_dir))
    except Exception as error:
        raise UserError(f"{path} is not a valid nanochat config: {error}") from error
    check_supported(hf, path)
    rope_base = (hf.rope_parameters or {}).get("rope_theta", 10000.0)
    # the training context: picochat's own record if it exported the folder, else the context it states
    seq_len = (picochat_header(hf_dir).get("model_config") or {}).get("seq_len") or hf.max_position_embeddings
    same = {ours: getattr(hf, theirs) for ours, theirs in HF_NAMES.items()} | {"rope_base": rope_base}
    try:
        config = GPTConfig(**same, seq_len=seq_len, mlp_ratio=hf.intermediate_size // hf.hidden_size)
    except ValueError as error:
        raise UserError(f"{path}: {error}") from None
    if (positions := hf.max_position_embeddings) > config.rope_len:
        raise unsupported(path, "max_position_embeddings", positions, f"at most {config.rope_len}")
    return config, bool(getattr(hf, "tie_word_embeddings", False))


def check_supported(hf, path: Path) -> None:
    hidden, heads = hf.hidden_size, hf.num_attention_heads
    head_dim = getattr(hf, "head_dim", None) or hidden // heads
    if hidden % heads or head_dim != hidden // heads:
        raise unsupported(
            path, "head_dim", head_dim, f"it must be hidden_size / num_attention_heads = {hidden / heads}"
        )
    if hf.intermediate_size % hidden:
        raise unsupported(
            path, "intermediate_size", hf.intermediate_size, "it must be a multiple of hidden_size"
        )
    if hf.hidden_act != "relu2":
        raise unsupported(path, "hidden_act", hf.hidden_act, "the MLP is ReLU²")
    if getattr(hf, "attention_bias", False):
        raise unsupported(path, "attention_bias", True, "picochat has no biases")
    if getattr(hf, "attention_dropout", 0.0):
        raise unsupported(path, "attention_dropout", hf.attention_dropout, "picochat has no dropout")
    if hf.final_logit_softcapping is None:
        raise unsupported(path, "final_logit_softcapping", None, "picochat always soft-caps the logits")
    rope_type = (hf.rope_parameters or {}).get("rope_type", "default")
    if rope_type != "default":
        raise unsupported(path, "rope_parameters.rope_type", rope_type, "only plain RoPE")


def weight_files(hf_dir: Path) -> list[Path]:
    if (hf_dir / WEIGHTS_FILE).is_file():
        return [hf_dir / WEIGHTS_FILE]
    if (hf_dir / WEIGHTS_INDEX).is_file():
        weight_map = read_json(hf_dir / WEIGHTS_INDEX).get("weight_map", {})
        return [hf_dir / name for name in sorted(set(weight_map.values()))]
    raise UserError(
        f"{hf_dir} has no {WEIGHTS_FILE} (or {WEIGHTS_INDEX}); picochat imports safetensors weights only"
    )


def read_weights(hf_dir: Path, config: GPTConfig, tied: bool) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(hf_dir):
        if not path.is_file():
            raise UserError(f"{path} is missing (named in {WEIGHTS_INDEX})")
        try:
            tensors = load_file(str(path))
        except Exception as error:  # safetensors raises several types for a damaged or truncated file
            raise UserError(f"{path} is damaged or truncated ({error}); download it again") from error
        for name, tensor in tensors.items():
            if "rotary_emb" not in name:  # a cache of RoPE frequencies, recomputed by picochat
                state[name.removeprefix("model.")] = tensor.float()
    if tied and "lm_head.weight" not in state and "embed_tokens.weight" in state:
        state["lm_head.weight"] = state["embed_tokens.weight"].clone()  # tied: the head is the embedding
    with torch.device("meta"):
        check_weights(GPT(config), state, f"{hf_dir}: the weights do not fit picochat's model")
    return state


def read_tokenizer(hf_dir: Path) -> Tokenizer:
    path = hf_dir / "tokenizer.json"
    spec = read_json(path)
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise UserError(f"{path}: model.type is {model.get('type')!r}; picochat reads byte-level BPE only")
    pattern = split_pattern(spec.get("pre_tokenizer"), path)
    ranks = byte_level_ranks(model, path)
    specials = {t.get("content"): t.get("id") for t in spec.get("added_tokens") or []}
    for i, token in enumerate(SPECIAL_TOKENS):
        if specials.get(token) != len(ranks) + i:
            raise UserError(
                f"{path}: special token {token} should have id {len(ranks) + i} but has "
                f"{specials.get(token)!r}; picochat's chat format needs {', '.join(SPECIAL_TOKENS)} "
                "right after the BPE vocabulary"
            )
    try:
        tokenizer = Tokenizer(ranks, pattern, name=hf_dir.name)
    except ValueError as error:
        raise UserError(f"{path}: {error}") from None
    check_same_encoding(path, tokenizer)
    return tokenizer


def byte_level_ranks(model: dict, path: Path) -> dict[bytes, int]:
    """The BPE vocabulary as bytes -> id, checked to be ids 0..n-1 merged in id order (as picochat merges)."""
    to_byte = {char: byte for byte, char in byte_to_unicode().items()}
    ranks: dict[bytes, int] = {}
    for text, token_id in model["vocab"].items():
        try:
            ranks[bytes(to_byte[char] for char in text)] = token_id
        except KeyError:
            raise UserError(f"{path}: vocabulary entry {text!r} is not byte-level BPE text") from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise UserError(f"{path}: the BPE vocabulary ids must be 0..{len(ranks) - 1}, each once")
    merged_ids = []
    for merge in model.get("merges") or []:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        merged_ids.append(model["vocab"].get(left + right, -1))
    if -1 in merged_ids or any(b <= a for a, b in zip(merged_ids, merged_ids[1:])):
        raise UserError(
            f"{path}: the merges are not in the order of their token ids; picochat's tokenizer merges by id"
        )
    return ranks


def split_pattern(pre_tokenizer: dict | None, path: Path) -> str:
    """The split regex of a `Sequence[Split(regex), ByteLevel(use_regex=False)]` pre-tokenizer."""
    steps = (pre_tokenizer or {}).get("pretokenizers") or []
    if (
        len(steps) == 2
        and steps[0].get("type") == "Split"
        and isinstance((steps[0].get("pattern") or {}).get("Regex"), str)
        and steps[1].get("type") == "ByteLevel"
        and not steps[1].get("use_regex", True)
    ):
        return steps[0]["pattern"]["Regex"]
    raise UserError(
        f"{path}: pre_tokenizer must be a Split by a regex then ByteLevel without its own regex "
        "(as picochat and nanochat write it)"
    )


def check_same_encoding(path: Path, tokenizer: Tokenizer) -> None:
    sample = "Hello, world! It's 2026: 12*7 = 84.\n\tdef f(x):\n        return x ** 2  # sq\n"
    sample += "Grüße, naïve café — 東京 🙂  spaces   and\r\nnewlines\n\n"
    hf = HFTokenizer.from_file(str(path))
    if hf.encode(sample, add_special_tokens=False).ids != tokenizer.encode(sample):
        raise UserError(f"{path}: its BPE encodes differently from picochat's; it cannot be imported")
