"""The chat probe set: 50 held-out prompts for each skill a user tries, and 50 second turns, fixed so that
runs compare (docs/probes.md; tests/test_probe_set.py checks no training task can produce one).
"""

import re
from importlib.resources import files

from picochat.tasks.checkable import last_number
from picochat.tasks.letter_forms import spell_out, stated_count
from picochat.tools.calculator import Calculator
from picochat.wordlists import PROBE_SPELLING_TEMPLATES, PROBE_SPELLING_WORDS, PROBE_UNSEEN_WORDS


def read_lines(name: str) -> list[str]:
    return files(__package__).joinpath(name).read_text(encoding="utf-8").splitlines()


def read_table(name: str) -> list[tuple[str, ...]]:
    return [tuple(line.split("\t")) for line in read_lines(name)]


IDENTITY = read_lines("probe_identity.txt")
ARITHMETIC = read_table("probe_arithmetic.tsv")  # (question, answer)
COUNTING = [(q, str(word.count(letter))) for q, word, letter in read_table("probe_counting.tsv")]
WORD_PROBLEMS = [(q, answer) for q, _, answer in read_table("probe_word_problems.tsv")]  # beside: the sum
SMALL_TALK = read_table("probe_small_talk.tsv")  # (question, topic)
FALSE_IDENTITY = read_lines("probe_false_identity.txt")
FIRST_TURNS = read_table("probe_first_turns.tsv")  # (skill, question, calculator call or "", reply)
SECOND_TURN_SKILLS = ("identity", "arithmetic", "spelling", "counting", "small_talk")
SECOND_TURNS = 10  # per skill: its first ten probes, each after a first exchange of another skill


def spelling_probes(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """(question, the letters spelled out), the five phrasings in turn."""
    templates = PROBE_SPELLING_TEMPLATES
    return [(templates[i % len(templates)].format(word=w), spell_out(w)) for i, w in enumerate(words)]


SPELLING = spelling_probes(PROBE_SPELLING_WORDS)
SPELLING_UNSEEN = spelling_probes(PROBE_UNSEEN_WORDS)


def first_turn_probes() -> list[tuple[str, str, str]]:
    """(skill, question, expected): "picochat", the answer, "t a b l e", the small-talk topic, or "-"."""
    return (
        [("identity", q, "picochat") for q in IDENTITY]
        + [("arithmetic", q, a) for q, a in ARITHMETIC]
        + [("spelling", q, s) for q, s in SPELLING]
        + [("spelling_unseen", q, s) for q, s in SPELLING_UNSEEN]
        + [("counting", q, n) for q, n in COUNTING]
        + [("word_problems", q, a) for q, a in WORD_PROBLEMS]
        + [("small_talk", q, topic) for q, topic in SMALL_TALK]
        + [("false_identity", q, "-") for q in FALSE_IDENTITY]
    )


def first_exchange(question: str, call: str, reply: str) -> list[dict]:
    """A first exchange answered well, a calculator call in it where the skill uses one."""
    content: str | list[dict] = reply
    if call:
        output = Calculator().run(call).output
        content = [{"type": "python", "text": call}, {"type": "python_output", "text": output}]
        content.append({"type": "text", "text": reply})
    return [{"role": "user", "content": question}, {"role": "assistant", "content": content}]


def second_turn_contexts() -> dict[tuple[str, str], list[dict]]:
    """{("second_turn:SKILL", question): the first exchange before it}, the other skills' in turn."""
    probes, contexts = first_turn_probes(), {}
    for skill in SECOND_TURN_SKILLS:
        others = [first_exchange(*row[1:]) for row in FIRST_TURNS if row[0] != skill]
        questions = [q for kind, q, _ in probes if kind == skill][:SECOND_TURNS]
        for i, question in enumerate(questions):
            contexts[(f"second_turn:{skill}", question)] = others[i % len(others)]
    return contexts


SECOND_TURN_CONTEXTS = second_turn_contexts()


def probe_set() -> list[tuple[str, str, str]]:
    """Every probe as (kind, question, expected); a second turn's kind is "second_turn:SKILL"."""
    first = first_turn_probes()
    expected = {(kind, q): e for kind, q, e in first}
    seconds = [(k, q, expected[(scored_as(k), q)]) for k, q in SECOND_TURN_CONTEXTS]
    return first + seconds


def scored_as(kind: str) -> str:
    """The skill whose rule scores a probe: a second turn is scored like the first-turn probe."""
    return kind.removeprefix("second_turn:")


def probe_messages(kind: str, question: str) -> list[dict]:
    """The conversation a probe asks the model to complete."""
    return [*SECOND_TURN_CONTEXTS.get((kind, question), []), {"role": "user", "content": question}]


# Pass rules of the skills added with the conversation levers (docs/probes.md); the first four's are in probes.py
def names_itself(reply: str) -> bool:
    """The identity answer: the reply names the model."""
    return "picochat" in reply.lower()


WALK_STEP = re.compile(r"\b[a-z] \d+,")  # "n 1," in "Counting a: b 0, a 1, n 1, ..."


def counted(expected: str, reply: str) -> bool:
    """The count the reply states ("appears 3 times"), else its last number, is the letter's count. A walk
    cut off before its total states nothing: its last number is only the count so far."""
    count = stated_count(reply)
    if count is None and WALK_STEP.search(reply):
        return False
    return (last_number(reply) if count is None else count) == float(expected)


def solved(expected: str, reply: str) -> bool:
    """The reply's last number is the answer; a calculator call's output is part of the reply."""
    return last_number(reply) == float(expected)


TOPIC_WORDS = {
    "greeting": "hi|hello|hey|hiya|howdy|greetings|welcome|good (morning|afternoon|evening|day)|(nice|good|great) to (meet|see)",
    "how_are_you": "good|fine|well|great|okay|ok|alright|not bad|wonderful|doing (good|great|well|fine|ok)",
    "thanks": "welcome|pleasure|no problem|anytime|glad|happy to help|no worries|you bet",
    "goodbye": "bye|goodbye|see you|take care|later|good night|farewell|have a (good|nice|great)",
}


def on_topic(topic: str, reply: str) -> bool:
    """Small talk: not the identity answer, and a word that answers the topic ("welcome" to thanks)."""
    said = re.search(rf"\b({TOPIC_WORDS[topic]})\b", reply.lower())
    return said is not None and not names_itself(reply)


PASS_RULES = {
    "counting": counted,
    "word_problems": solved,
    "small_talk": on_topic,
    "false_identity": lambda _, reply: not names_itself(reply),
}
