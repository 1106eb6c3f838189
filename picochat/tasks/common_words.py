"""The 1,000 commonest words people type in conversation: the spelling task practises these most.

They are the most frequent lowercase words of 3 to 8 letters in the chitchat dataset's 7,168 human
conversations (PyPI chitchat-dataset 0.9.0, MIT), kept when reasoning-gym's English word list has them
(so typos and slang drop out) and not an apostrophe-less contraction ("dont"); ties go alphabetically.
Regenerate (the list is data, stored so that training never depends on a download):

    python -m picochat.tasks.common_words $PICOCHAT_HOME/data/sources/chitchat/root/chitchat_dataset/dataset.json
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from functools import cache
from pathlib import Path

CONTRACTIONS = set("""don doesn didn isn wasn aren couldn wouldn shouldn haven hasn hadn weren won whats thats
wouldnt dont didnt isnt cant wont ive youre theyre hes shes lets im id ill youve theres heres wasnt arent couldnt
shouldnt doesnt havent hasnt""".split())  # fmt: skip

COMMON_WORDS = """
the you that and have but like for are what was just would yeah they really with not think about good can
there how know all one this get your people too because out time well then when cool more going from had
some its them right will did lot could pretty want love been much though also see got way fun she were
probably nice actually make who sure day thing school great doing kind where still work yes never why only
into hey very need back any feel here hello those maybe their same super little true take hard class guess
stuff first than say mean always life should her awesome favorite his ever which talk chat many most him
best wow bad before long our over anything better talking off being year last new man thought world computer
movie use after someone try sorry around big two again down went person classes getting crazy play made
family seen able remember thanks friend done might find food while real trying mission keep read start major
money few said idea help music part end place tell look come funny today home enough learn sense guy
question name watch used every high live wait next yet give job working bit another else totally hope
already since weird far through both let summer anyone honestly once these least eat put either whole
exactly taking own night point week college amazing took agree semester wish car such yep book each chatting
science myself game away show usually thinking girl times hear dad old making enjoy until close type told
almost sweet fall house excited days mind nothing dude couple study top second story quite later watching
less program without change sad free came learning ago believe fast ask sister human win reason run saw
brother homework lots happen looking fine pay open problem found meet water country left thank wonder tried
business soon test math small dog happy learned imagine buy morning call coming plan phone easy power sleep
travel bet stay together ice ton huge side works leave reading may head sound course fan hate smart mine
between turn care three wrong design knew cause cream campus anyway become married luck saying answer seem
stop must spend smell worth break freshman goes half dang language although glad million video met team
church black butter instead yourself watched listen figure check art outside past teacher during peanut
bunch move often scary full living mostly recently hour ready hot honest comes tomorrow rather rest choose
fact unless cold nope random speak teach future goodness space marvel dinner rock whatever flying student
dream alright general data gone possible feeling plus word hit easier fly huh running felt doctor except
ended white sort supposed decided social drive middle worst pick project write gotten room dance exciting
late prompt song company ran set wife quickly early die number terrible worked sports visit eating pizza
taken busy based create deal hair chance series matter war ink system code writing behind lived sick
graduate perfect research anyways please along needs finished month similar group piano younger climbing
cute bed hand short round body city fair starting south history waiting ate tonight older worry young lost
certain god grade quick red suppose catch field serve blue state against spring cow gosh personal save list
apple entire meant winter send level slightly amount cat hero weather insane weekend boring green self
opinion ways bring normal finish four walk bye follow light brain miss boy building football tired cut
speaking trip baby longer paper star tough realize cook case door dating fish deep given lucky snow build
slowly area driving face season physics choice control yours health air forgot besides helping holy decide
seeing shoot chicken finally gave harder moving age earth hurt specific strange anywhere center cried
infinity strong forever office credit figured final grow prefer color count faster harry robot giving simple
pass culture growing multiple order road sell example line medical practice pro sometime five magic main
turned clean dogs slept dark hold under moment add husband career focus law quiet worried awkward lose
stopped inside text annoying chit animal dumb however minor film potter vote worse evil machine rough loud
share dead party telling kept odd ride roommate extra mainly rain beach ward forget respond term town child
per poor stress teeth sitting topic advice gingerly stand actual alone heck lunch senior society biology
heritage serious special intense slow ahead chill lab single meeting cheap grew milk support forward public
biggest curious lady letter news purple straight modern ugh explain speed teaching meat taste goal neither
tech blinked consider minute warm dancing lightly soccer fix message store quietly bread drew pain born
front screen subject ability band bike cheese climb hourly kill taught till towards track within secret
switch tall wall energy whether apply board process softly third death north sent theory broke hungry score
mother orange picture sit yearly cooking fresh higher neat whenever finding voice waved bought library media
religion blood briskly degree wind beat coast electric hike joke lake lead park east sing healthy clumsily
handle memory popular tho club common fire issue knowing likely crisply evening involved exercise incoming
itself non somehow twice large lately pull service confused ground heart lord pink pop yellow safe useful
walking invest relive user ted throw account calmly form known low related act alive barely wear clay easily
foot leaving men stuck applied fit laugh mad page quality mormon asleep cost decent gross plant swim classic
flavor mountain natural universe guessing mess average island anime murder sign calculus caught continue
hundred loudly nature ocean version across assuming fell iron turns above anybody eve ball struggle assume
bigger doubt reality birthday clock jump stick creepy shot stupid testing wanting key normally training
trust wild nervous paying schedule screw sleeping sun welcome agreed familiar famous mental rich spirit
total bacon exam grateful improve lame sport drawing helpful security solid card nursing swimming thousand
cannot land planet connect double guitar""".split()


@cache
def dictionary_words() -> tuple[str, ...]:
    """reasoning-gym's English word list (3-10 letters), lowercase a-z only; empty if it is missing."""
    spec = importlib.util.find_spec("reasoning_gym")  # located, not imported: its import is slow
    listed = Path(spec.submodule_search_locations[0]) / "data" / "words3to10.txt" if spec else None
    if not (listed and listed.exists()):
        return ()
    return tuple(
        w for w in listed.read_text(encoding="utf-8").split() if w.isascii() and w.isalpha() and w.islower()
    )


def count_common_words(dataset: Path, dictionary: set[str], count: int = 1000) -> list[str]:
    """The `count` most frequent dictionary words of 3-8 letters in chitchat's dataset.json, commonest first."""
    raw = json.loads(Path(dataset).read_text(encoding="utf-8"))
    counts: Counter[str] = Counter()
    for key in sorted(raw):
        for turn in raw[key].get("messages", []):
            for message in turn:
                counts.update(w.lower() for w in re.findall(r"[A-Za-z]+", message.get("text", "")))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [w for w, _ in ranked if 3 <= len(w) <= 8 and w in dictionary and w not in CONTRACTIONS][:count]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("usage: python -m picochat.tasks.common_words PATH/chitchat_dataset/dataset.json "
              "(fetched into $PICOCHAT_HOME/data/sources/chitchat by `picochat sft`)", file=sys.stderr)  # fmt: skip
        return 2
    print(" ".join(count_common_words(Path(argv[0]), set(dictionary_words()))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
