"""The conversation levers as SFT tasks: walked letter counts, word problems through the calculator, identity
with negatives, small talk, second turns; each off unless a mixture names it."""

import re

import pytest

from picochat.errors import UserError
from picochat.evaluation.probe_set import on_topic
from picochat.settings import SFT_MIXTURE
from picochat.tasks import make_task, parse_mixture
from picochat.tasks.arithmetic import ArithmeticTask
from picochat.tasks.identity import IdentityTask
from picochat.tasks.multiturn import MultiTurnTask
from picochat.tasks.smalltalk import OPENERS, TOPICS, SmallTalkTask
from picochat.tasks.spelling import SpellingTask
from picochat.tokenizer.chat import parse_conversation
from picochat.tools import Calculator

WALK = re.compile(r"Counting ([a-z]): ((?:[a-z] \d+, )*[a-z] \d+)\. The letter \1 appears (\d+) times?\.")


def test_walked_count_keeps_a_running_count_whose_last_value_is_the_answer():
    task, walked = SpellingTask("walk"), 0
    for i in range(400):
        question, answer = (m["content"] for m in task.conversation(i))
        found = WALK.fullmatch(answer)
        if not found:
            continue
        letter, steps, stated = found.group(1), found.group(2).split(", "), int(found.group(3))
        word = "".join(step.split(" ")[0] for step in steps)
        assert re.search(rf"\b{word}\b", question) and len(steps) == len(word)
        running = 0
        for step in steps:  # each step adds one exactly at the letter
            ch, count = step.split(" ")
            running += ch == letter
            assert int(count) == running
        assert stated == int(steps[-1].split(" ")[1]) == word.count(letter)
        walked += 1
    assert walked > 80  # about 30 % of the conversations count a letter
    replies = [SpellingTask().conversation(i)[1]["content"] for i in range(200)]  # the default: unchanged
    assert not any(WALK.fullmatch(r) for r in replies) and any(
        r.startswith("Spelling it out:") for r in replies
    )


def test_word_problems_call_the_calculator_with_the_story_numbers():
    task, calculator, stories = ArithmeticTask("stories"), Calculator(), 0
    for i in range(300):
        question, reply = (m["content"] for m in task.conversation(i))
        if not isinstance(reply, list) or not reply[-1]["text"].startswith("The answer is"):
            continue
        expression, output = reply[0]["text"], reply[1]["text"]
        a, op, b = expression.split(" ")
        assert re.findall(r"\d+", question) == [a, b] or re.findall(r"\d+", question) == [b, a]
        assert output == calculator.run(expression).output and reply[-1]["text"] == f"The answer is {output}."
        assert op != "/" or int(a) % int(b) == 0  # whole quotients: a story shares out whole things
        assert op != "-" or int(a) >= int(b)
        stories += 1
    assert 80 < stories < 160  # STORY_SHARE 0.4 of 300
    plain = ArithmeticTask()
    assert all(plain.conversation(i)[1]["content"][-1]["text"][:13] != "The answer is" for i in range(300))


def test_varied_identity_answers_others_without_the_introduction():
    task, negatives = IdentityTask("Ada", "varied"), 0
    for i in range(600):
        messages = task.conversation(i)
        question, answer = messages[0]["content"], messages[1]["content"]
        assert question not in ("hi", "Hello!")  # bare greetings are small talk's
        negatives += "picochat" not in answer
    assert 150 < negatives < 250  # a third
    assert all("picochat" in IdentityTask("Ada").conversation(i)[1]["content"] for i in range(300))


def test_small_talk_replies_are_on_topic_and_never_the_introduction():
    task, seen = SmallTalkTask(), set()
    opened = 0
    for i in range(300):
        messages = task.conversation(i)
        assert len(messages) in (2, 4)
        for ask, reply in zip(messages[::2], messages[1::2]):
            topic = topic_of(ask["content"])
            seen.add(topic)
            opened += ask["content"] not in TOPICS[topic]["asks"]
            assert on_topic(topic, reply["content"]), (ask, reply)  # the probe's own rule
    assert seen == set(TOPICS) and opened > 10


def topic_of(question: str) -> str | None:
    """The small-talk topic of a question, an opener ("Hello! ", "Morning, ") allowed before a how-are-you."""
    for opener in ["", *OPENERS]:
        if question.startswith(opener):
            rest = question[len(opener) :]
            for topic, lines in TOPICS.items():
                if rest in lines["asks"] or (opener and rest[:1].upper() + rest[1:] in lines["asks"]):
                    return topic
    return None


def skill_of(question: str, reply) -> str:
    if isinstance(reply, list):
        return "arithmetic"
    if topic_of(question):
        return "smalltalk"
    return "spelling" if reply.startswith(("Letter by", "Counting", "- ", "Spelling it")) else "identity"


def test_second_turns_join_two_different_skills():
    task, pairs = MultiTurnTask("Ada"), set()
    for i in range(200):
        messages = task.conversation(i)
        assert [m["role"] for m in messages] == ["user", "assistant"] * 2
        parse_conversation(messages)  # tool calls and roles are well formed
        assert messages == task.conversation(i)
        pair = (
            skill_of(*(m["content"] for m in messages[:2])),
            skill_of(*(m["content"] for m in messages[2:])),
        )
        assert pair[0] != pair[1], messages
        pairs.add(pair)
    assert len(pairs) == 12  # every ordered pair of the four skills


def test_variants_are_named_in_a_mixture_and_checked():
    mixture = parse_mixture(
        "identity:varied:1,arithmetic:stories:4,spelling:walk,smalltalk,multiturn:2", "Ada"
    )
    assert [t.name for t in mixture.tasks] == [
        "identity:varied",
        "arithmetic:stories",
        "spelling:walk",
        "smalltalk",
        "multiturn",
    ]
    assert mixture.weights == [1.0, 4.0, 1.0, 1.0, 2.0]
    assert "Ada" in " ".join(str(m["content"]) for i in range(40) for m in mixture.conversation(i)[1])
    for bad, named in (
        ("spelling:backwards", "walk"),
        ("smalltalk:loud", "no variants"),
        ("nope", "unknown"),
    ):
        with pytest.raises(UserError, match=named):
            make_task(bad)


def test_the_default_mixture_holds_the_conversation_tasks():
    offline = [item.rpartition(":")[0] for item in SFT_MIXTURE.split(",")]  # chitchat, gym: fetched
    assert {make_task(spec).name for spec in offline if spec not in ("chitchat", "gym")} == {
        "identity:varied",
        "arithmetic:stories",
        "spelling",
        "smalltalk",
        "multiturn",
    }
