"""The probe set is held out: no training task can produce one of its prompts, and its checks are right."""

import functools
import json
import operator
import re
from collections import Counter

from picochat.evaluation.probe_set import (
    ARITHMETIC,
    COUNTING,
    FALSE_IDENTITY,
    FIRST_TURNS,
    IDENTITY,
    SECOND_TURN_SKILLS,
    SMALL_TALK,
    SPELLING,
    SPELLING_UNSEEN,
    TOPIC_WORDS,
    WORD_PROBLEMS,
    probe_messages,
    probe_set,
    read_table,
    scored_as,
)
from picochat.evaluation.probes import ProbeResult, calculator_values, summarize
from picochat.tasks import arithmetic, identity
from picochat.tasks.arithmetic import PHRASINGS, ArithmeticTask
from picochat.tasks.identity import IdentityTask
from picochat.tasks.multiturn import MultiTurnTask
from picochat.tasks.smalltalk import TOPICS, SmallTalkTask
from picochat.tasks.spelling import (
    COUNT_TEMPLATES,
    LIST_TEMPLATES,
    SpellingTask,
    spell_templates,
    spelling_words,
)
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


def test_the_conversation_probe_sets_and_their_answers():
    probes = probe_set()
    for skill in ("counting", "word_problems", "small_talk", "false_identity"):
        questions = [q for kind, q, _ in probes if kind == skill]
        assert len(questions) == len(set(questions)) == 50, skill
    common, _ = spelling_words()
    for (question, expected), (_, word, letter) in zip(COUNTING, read_table("probe_counting.tsv")):
        assert (
            word in common and re.search(rf"\b{word}\b", question) and re.search(rf"\b{letter}\b", question)
        )
        assert int(expected) == sum(1 for ch in word if ch == letter), question
    assert {n for _, n in COUNTING} >= {"0", "1", "2", "3"}
    assert max(Counter(n for _, n in COUNTING).values()) <= 20  # one answer for all cannot reach 30 of 50
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}
    for question, expression, answer in read_table("probe_word_problems.tsv"):
        a, op, b = expression.split(" ")
        assert re.findall(r"\d+", question) == [a, b] and int(answer) == ops[op](int(a), int(b)), question
        assert op != "/" or int(a) % int(b) == 0
    assert {topic for _, topic in SMALL_TALK} == set(TOPIC_WORDS)
    # a second turn is the skill's first-turn probe after a first exchange of another skill
    seconds = [(kind, q) for kind, q, _ in probes if kind.startswith("second_turn:")]
    assert len(seconds) == 50 and {k for k, _ in seconds} == {f"second_turn:{s}" for s in SECOND_TURN_SKILLS}
    first_skill = {row[1]: row[0] for row in FIRST_TURNS}
    for kind, question in seconds:
        messages = probe_messages(kind, question)
        assert [m["role"] for m in messages] == ["user", "assistant", "user"] and messages[2][
            "content"
        ] == question
        assert first_skill[messages[0]["content"]] != scored_as(kind) and (scored_as(kind), question) in {
            (k, q) for k, q, _ in probes
        }
    assert probe_messages("identity", IDENTITY[0]) == [{"role": "user", "content": IDENTITY[0]}]


def normalized(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def test_no_conversation_probe_is_asked_in_training():
    owner = "its user"
    tasks = [
        IdentityTask(owner),
        IdentityTask(owner, "varied"),
        SpellingTask("walk"),
        ArithmeticTask("stories"),
    ]
    tasks += [SmallTalkTask(), MultiTurnTask(owner)]
    asked = {
        normalized(m["content"])
        for task in tasks
        for i in range(1500)
        for m in task.conversation(i)
        if m["role"] == "user"
    }
    asked |= {normalized(q) for q, _ in identity.NEGATIVES} | {normalized(q) for q in identity.VARIED}
    asked |= {normalized(a) for topic in TOPICS.values() for a in topic["asks"]}
    new_sets = [q for q, _ in COUNTING + WORD_PROBLEMS + SMALL_TALK] + FALSE_IDENTITY
    assert len(asked) > 3000 and not {normalized(q) for q in new_sets} & asked
    counts = [
        re.escape(t).replace(r"\{letter\}", "[a-z]").replace(r"\{word\}", "[a-z]+") for t in COUNT_TEMPLATES
    ]
    for question, _ in COUNTING:  # whatever the word and the letter
        assert not any(re.fullmatch(t, question) for t in counts), question
    stories = [s for op in "+-*/" for s in PHRASINGS["stories"][op] + PHRASINGS["more_stories"][op]]
    slots = {r"\{a\}": r"\d+", r"\{b\}": r"\d+", r"\{name\}": "[A-Z][a-z]+", r"\{things\}": "[a-z]+"}
    stories = [functools.reduce(lambda t, s: t.replace(s, slots[s]), slots, re.escape(s)) for s in stories]
    for question, _ in WORD_PROBLEMS:  # whatever the numbers, names and things
        assert not any(re.fullmatch(t, question) for t in stories), question
    assert re.fullmatch(stories[0], "Ana has 12 apples and gets 5 more. How many apples does Ana have now?")


def test_pass_rules_of_the_conversation_probes():
    def passed(kind: str, expected: str, reply: str) -> bool:
        return ProbeResult(kind, "q", expected, reply).passed

    walk = "Counting r: c 0, h 0, e 0, r 1, r 2, y 2. The letter r appears 2 times."
    assert passed("counting", "2", walk) and passed("counting", "2", "There are 2.")
    assert not passed("counting", "2", "The letter r appears 1 time (at position 2).")
    assert passed("counting", "1", "The letter r appears 1 time (at position 4).")  # not the position
    assert not passed("counting", "0", "Counting q: l 0, i 0, t 0")  # a walk cut off states no total
    call = "<|python_start|>22 + 15<|python_end|><|output_start|>{}<|output_end|>"
    assert passed("word_problems", "37", call.format("37")) and passed("word_problems", "37", "You have 37.")
    assert not passed("word_problems", "37", call.format("37") + " So you have 38 apples.")
    assert passed("small_talk", "thanks", "You're welcome!") and passed(
        "small_talk", "goodbye", "Bye, take care."
    )
    assert not passed("small_talk", "how_are_you", "I am doing today?")  # the reply
    assert not passed("small_talk", "greeting", "Hello! I'm picochat, a small chat model.")
    assert not passed("small_talk", "thanks", "Hello there.")  # off topic: a greeting to thanks
    assert passed("false_identity", "-", "Paris.") and not passed("false_identity", "-", "I am Picochat.")
    # a second turn is scored by its skill's rule
    assert passed("second_turn:counting", "2", walk) and not passed("second_turn:arithmetic", "37", "37")
    assert passed("second_turn:identity", "picochat", "I'm picochat.")
