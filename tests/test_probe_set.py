"""The probe set is held out: no training task can produce one of its prompts, and its checks are right."""

import json
import re

from picochat.evaluation.probe_set import ARITHMETIC, IDENTITY, SPELLING, SPELLING_UNSEEN, probe_set
from picochat.evaluation.probes import ProbeResult, calculator_values, summarize
from picochat.tasks import arithmetic, identity
from picochat.tasks.spelling import LIST_TEMPLATES, SpellingTask, spell_templates, spelling_words
from picochat.wordlists import PROBE_SPELLING_WORDS, PROBE_UNSEEN_WORDS


def test_fifty_distinct_prompts_per_skill():
    probes = probe_set()
    for skill in ("identity", "arithmetic", "spelling", "spelling_unseen"):
        questions = [q for kind, q, _ in probes if kind == skill]
        assert len(questions) == len(set(questions)) == 50, skill


def test_arithmetic_answers_are_what_the_question_asks():
    words = {"plus": "+", "minus": "-", "take away": "-", "times": "*", "divided by": "/"}
    for question, answer in ARITHMETIC:
        a, b = (int(n) for n in re.findall(r"\d+", question))
        op = next((o for w, o in words.items() if w in question), None)
        op = op or ("+" if question.startswith(("Add", "What is the sum")) else None)
        op = op or ("*" if question.startswith(("Multiply", "What is the product")) else None)
        op = op or ("/" if question.startswith("Divide") else None)
        if question.startswith("Subtract"):  # "Subtract b from a"
            a, b, op = b, a, "-"
        op = op or re.search(r"\d+ ([-+*/]) \d+", question).group(1)
        expected = {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
        assert float(answer) == expected, question


def test_no_probe_prompt_is_a_training_prompt():
    assert not set(IDENTITY) & set(identity.QUESTIONS)
    asked = {identity.IdentityTask().conversation(i)[0]["content"].lower() for i in range(5000)}
    assert len(asked) > 100 and not {q.lower() for q in IDENTITY} & asked  # greetings and "Are you X?" too
    templates = [re.escape(t).replace(r"\{expr\}", r"[\d()+\-*/ ]+") for t in arithmetic.TEMPLATES]
    for forms in arithmetic.WORDED_TEMPLATES.values():
        templates += [re.escape(t).replace(r"\{a\}", r"\d+").replace(r"\{b\}", r"\d+") for t in forms]
    for question, _ in ARITHMETIC:  # none of the SFT task's phrasings, whatever the numbers
        assert not any(re.fullmatch(t, question) for t in templates), question


def test_unseen_words_are_never_spelled_in_training_and_probe_phrasings_are_new():
    common, listed = spelling_words()
    assert len(listed) > 10_000 and set(PROBE_SPELLING_WORDS) <= set(common)  # common words are practised
    assert not set(PROBE_UNSEEN_WORDS) & (set(common) | set(listed))
    task, spelled_words = SpellingTask(), set()
    for i in range(3000):
        reply = task.conversation(i)[1]["content"]
        for spelled in re.findall(r"(?<![a-z])([a-z](?: [a-z])+)(?![a-z])", reply):
            spelled_words.add(spelled.replace(" ", ""))
    assert not spelled_words & set(PROBE_UNSEEN_WORDS)
    assert len(spelled_words & set(common)) > 500  # the common words come round again and again

    # case, closing punctuation, politeness, quotes, "the word" do not make it new
    def core(text: str) -> str:
        text = re.sub(r"['\"]|the word ", "", text.lower().replace("what's", "what is")).rstrip(".?!, ")
        return re.sub(
            r"^(please|can you|could you|would you|i need you to|quick one:|quick question:|hey,"
            r"|sorry,|i forgot:) ",
            "",
            text,
        )

    phrasings = spell_templates()
    assert len(phrasings) > 300 and all(p.count("{word}") == 1 for p in phrasings)
    templates = [re.escape(core(t)).replace(r"\{word\}", "[a-z]+") for t in phrasings + tuple(LIST_TEMPLATES)]
    for question, letters in SPELLING + SPELLING_UNSEEN:
        assert not any(re.fullmatch(t, core(question)) for t in templates), question
        assert letters.replace(" ", "") in question
    # the check has teeth: dressed-up probe phrasings are recognised as the probe's
    for dressed in (
        "Please spell the word 'table'!",
        'Could you spell out "table"?',
        "Hey, what's the spelling of table",
    ):
        assert any(
            re.fullmatch(re.escape(core(p)).replace(r"\{word\}", "[a-z]+"), core(dressed))
            for p in ("Spell {word}.", "Spell out the word {word}.", "What is the spelling of {word}?")
        )


def test_pass_rules():
    call = "<|python_start|>{}<|python_end|><|output_start|>{}<|output_end|>"
    good = ProbeResult("arithmetic", "Multiply 102 by 89.", "9078", call.format("102 * 89", "9078") + " 9078")
    wrong_operands = ProbeResult("arithmetic", "Multiply 102 by 89.", "9078", call.format("102 * 98", "9996"))
    no_tool = ProbeResult("arithmetic", "Multiply 102 by 89.", "9078", "It is 9078.")
    assert calculator_values(good.reply) == ["9078"]
    assert good.passed and not wrong_operands.passed and not no_tool.passed
    # the calculator's own value counts, not the output text a reply claims
    assert not ProbeResult("arithmetic", "q", "9078", call.format("1 + 1", "9078")).passed
    spelled = ProbeResult("spelling", "Spell house.", "h o u s e", "house is spelled h o u s e.")
    assert spelled.passed and ProbeResult("spelling", "Spell house.", "h o u s e", "H-O-U-S-E").passed
    for wrong in ("h o u s", "h-o-u-s", "h o u s e s", "t h o u s e", "house"):
        assert not ProbeResult("spelling", "Spell house.", "h o u s e", wrong).passed, wrong
    assert ProbeResult("identity", "Who is this?", "picochat", "I'm Picochat.").passed
    assert summarize([good, no_tool, spelled]) == {"arithmetic": "1/2", "spelling": "1/1"}


def test_common_words_are_counted_from_conversations_and_the_command_names_its_input(tmp_path, capsys):
    from bench.common_words import count_common_words, main

    dataset = tmp_path / "dataset.json"
    said = [["Dont you like the garden?", "the garden, yes"], ["xyzzy garden the cat", "Cat! the"]]
    dataset.write_text(
        json.dumps({str(i): {"messages": [[{"text": t} for t in turn]]} for i, turn in enumerate(said)})
    )
    dictionary = {
        "the",
        "garden",
        "cat",
        "you",
        "like",
        "yes",
        "dont",
    }  # "xyzzy" is not a word, "dont" a contraction
    assert count_common_words(dataset, dictionary, count=3) == ["the", "garden", "cat"]  # 4, 3, 2 times
    assert "xyzzy" not in count_common_words(
        dataset, dictionary | {"xyz"}
    ) and "dont" not in count_common_words(dataset, dictionary)
    assert main([str(tmp_path / "missing.json")]) == 2 and "usage:" in capsys.readouterr().err
