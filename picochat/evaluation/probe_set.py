"""The chat probe set: 50 held-out prompts for each skill SFT teaches, written once and never trained on.

    identity     the reply names the model ("picochat"); no question here is one the identity task asks
    arithmetic   the reply calls the calculator with an expression worth the answer (the right operands);
                 the phrasings are none of the arithmetic task's, and a third of them use words for the
                 operator ("plus", "divided by")
    spelling     the reply spells the word letter by letter ("m-u-s-i-c"): 50 common words (every 16th of the
                 4-7 letter ones among picochat/tasks/common_words.py) in phrasings the spelling task never
                 uses; the task does practise these words, since a model cannot know the letters of a token
                 it never saw spelled
    spelling_unseen  the same, for 50 words the spelling tasks never draw (`UNSEEN_WORDS` is removed from
                 their lists): whether spelling carries over to words never practised

The set is fixed: changing it would break every comparison recorded against it (docs/probes.md).
tests/test_probe_set.py checks that no probe can come out of a training task.
"""

from __future__ import annotations

from picochat.tasks.letter_forms import spell_out

IDENTITY = [
    "What's your name?", "Tell me your name.", "Who am I talking to?", "What should I call you?",
    "Do you have a name?", "Which AI are you?", "Identify yourself.", "Who is this?", "What are you called?",
    "Are you a chatbot?", "What kind of model are you?", "Who built you?", "Who created you?",
    "Who programmed you?", "Please introduce yourself.", "Can you tell me who you are?", "Are you human?",
    "What is this assistant?", "Hi there, who are you?", "Hello, what's your name?", "Are you Siri?",
    "Are you Alexa?", "Are you GPT-4?", "Are you Claude?", "What language model is this?", "Say your name.",
    "Name please?", "whats ur name", "who are u", "What do people call you?", "What are you exactly?",
    "Tell me something about you.", "Describe yourself.", "What's this chatbot called?",
    "Who am I chatting with?", "Hey! What's your name?", "Good evening, who are you?", "Yo, who is this?",
    "Which model am I speaking to?", "What is your identity?", "How should I address you?",
    "Are you a robot?", "Are you an AI?", "What's your story?", "Where were you made?",
    "What program are you?", "Hello there! Introduce yourself please.", "May I know your name?",
    "Who exactly are you?", "So, what are you?",
]  # fmt: skip

ARITHMETIC = [  # (question, answer); generated once with random.Random("picochat-probes-2026-12")
    ("Work out 337 * 73.", "24601"), ("What does 648 * 58 give?", "37584"), ("Evaluate 374 + 62.", "436"),
    ("Find 435 * 65.", "28275"), ("Tell me 509 * 56.", "28504"), ("What is 272 plus 20?", "292"),
    ("Add 295 and 80.", "375"), ("What is the sum of 992 and 11?", "1003"), ("What is 946 minus 43?", "903"),
    ("Subtract 76 from 653.", "577"), ("What is 113 take away 18?", "95"), ("What is 659 times 64?", "42176"),
    ("Multiply 102 by 89.", "9078"), ("What is the product of 439 and 85?", "37315"),
    ("What is 1920 divided by 96?", "20"), ("Divide 484 by 22.", "22"), ("Work out 744 - 78.", "666"),
    ("What does 421 - 16 give?", "405"), ("Evaluate 848 - 67.", "781"), ("Find 911 * 52.", "47372"),
    ("Tell me 751 * 40.", "30040"), ("What is 765 plus 74?", "839"), ("Add 49 and 86.", "135"),
    ("What is the sum of 647 and 52?", "699"), ("What is 335 minus 68?", "267"),
    ("Subtract 83 from 793.", "710"), ("What is 111 take away 13?", "98"), ("What is 131 times 7?", "917"),
    ("Multiply 882 by 30.", "26460"), ("What is the product of 911 and 50?", "45550"),
    ("What is 180 divided by 90?", "2"), ("Divide 1419 by 43.", "33"), ("Work out 296 + 27.", "323"),
    ("What does 613 - 45 give?", "568"), ("Evaluate 763 * 86.", "65618"), ("Find 412 - 69.", "343"),
    ("Tell me 615 - 94.", "521"), ("What is 610 plus 77?", "687"), ("Add 204 and 62.", "266"),
    ("What is the sum of 591 and 91?", "682"), ("What is 450 minus 18?", "432"),
    ("Subtract 76 from 357.", "281"), ("What is 547 take away 51?", "496"), ("What is 904 times 48?", "43392"),
    ("Multiply 493 by 23.", "11339"), ("What is the product of 60 and 33?", "1980"),
    ("What is 2030 divided by 58?", "35"), ("Divide 702 by 13.", "54"), ("Work out 108 - 98.", "10"),
    ("What does 550 * 69 give?", "37950"),
]  # fmt: skip

SPELLING_WORDS = """what time been never take many sorry done music high anyone such type later fine learned
reading campus dang during fact general drive number code hand quick send walk dating health center simple slept
animal kept topic single speed drew track theory library handle pull form asleep hundred clock mental""".split()
UNSEEN_WORDS = """table chair smile horse cloud candle pocket silent bridge finger flower jacket kitten lemon monkey
rabbit sugar ticket wagon basket market father garlic pillow ladder violin tunnel marble button pencil saddle
kettle comet blanket helmet turtle carrot spider rocket mirror wallet hammer bucket feather pirate lizard parrot
pebble walrus cabbage""".split()
SPELLING_TEMPLATES = ["Spell {word}.", "Please spell {word}.", "How is {word} spelled?",
                      "Spell out the word {word}.", "What is the spelling of {word}?"]  # fmt: skip


def spelling_probes(words: list[str]) -> list[tuple[str, str]]:
    """(question, the letters spelled out), the five phrasings in turn."""
    return [
        (SPELLING_TEMPLATES[i % len(SPELLING_TEMPLATES)].format(word=w), spell_out(w))
        for i, w in enumerate(words)
    ]


SPELLING = spelling_probes(SPELLING_WORDS)
SPELLING_UNSEEN = spelling_probes(UNSEEN_WORDS)


def probe_set() -> list[tuple[str, str, str]]:
    """Every probe as (skill, question, expected): identity expects "picochat", arithmetic the answer the
    calculator must produce, spelling the letters spelled out ("t a b l e")."""
    return ([("identity", q, "picochat") for q in IDENTITY] + [("arithmetic", q, a) for q, a in ARITHMETIC]
            + [("spelling", q, s) for q, s in SPELLING]
            + [("spelling_unseen", q, s) for q, s in SPELLING_UNSEEN])  # fmt: skip
