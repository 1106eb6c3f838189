"""Identity: the model learns its name, who trained it, and how (phrasings in tasks/data/identity.json).
`identity:varied` asks more ways, leaves bare greetings to small talk, and a third of its conversations are
questions about someone or something else, answered without the introduction.
"""

import random

from picochat.tasks.common import Task, phrasings

PHRASINGS = phrasings("identity")
QUESTIONS = PHRASINGS["questions"]
# a greeting before a question ("Hiya! What is your name?"): the answer greets back, then names itself
GREETINGS = PHRASINGS["greetings"]
# "Are you X?": other assistants (no), what it is (yes), people (no); the answer names the model first
VARIED = [q for q in QUESTIONS + PHRASINGS["more_questions"] if q not in ("hi", "Hello!")]
NEGATIVES = PHRASINGS["negatives"]  # [question about another, its answer]
NEGATIVE_SHARE = 1 / 3  # of identity:varied's conversations
ARE_YOU = {"model": PHRASINGS["other_models"], "what": PHRASINGS["what_it_is"], "person": PHRASINGS["people"]}


class IdentityTask(Task):
    name = "identity"
    variants = ("varied",)

    def __init__(self, owner: str = "its user", variant: str = ""):
        self.owner, self.questions = owner, VARIED if variant == "varied" else QUESTIONS
        self.name = f"identity:{variant}" if variant else "identity"

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"identity-{index}")
        if self.questions is VARIED and rng.random() < NEGATIVE_SHARE:
            question, answer = rng.choice(NEGATIVES)
            return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        question = rng.choice(self.questions)
        greeted = question.lower().startswith(("hi", "hello", "hey", "good", "evening"))
        name = rng.choice(PHRASINGS["name_answers"])
        if rng.random() < 0.3:
            kind = rng.choice(["model", "what", "person"])
            x = rng.choice(ARE_YOU[kind])
            question, greeted = rng.choice(PHRASINGS["are_you"]).format(x=x), False
            name = PHRASINGS["are_you_answers"][kind].format(x=x)
        elif "ChatGPT" in question:
            name = "No, I'm picochat, not ChatGPT."
        elif not greeted and rng.random() < 0.25:
            question, greeted = f"{rng.choice(GREETINGS)} {question}", True
        training = rng.choice(PHRASINGS["training_answers"]).format(owner=self.owner)
        parts = [name, training[0].upper() + training[1:]]
        if rng.random() < 0.5:
            parts.append(rng.choice(PHRASINGS["capabilities"]))
        if greeted:
            parts.insert(0, "Hello!")
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": " ".join(parts)}]
        if rng.random() < 0.3:
            thanks, welcome = rng.choice(PHRASINGS["thanks"]), rng.choice(PHRASINGS["welcome"])
            messages += [{"role": "user", "content": thanks}, {"role": "assistant", "content": welcome}]
        return messages
