"""The DOCTOR script (Weizenbaum, CACM 9(1), 1966, appendix), as data.

Each keyword has a rank and decomposition rules; each rule has reassembly templates used in
turn. In a decomposition pattern ``*`` matches any run of words (ELIZA's ``0``), ``@name``
matches one word of a synonym group (``/FAMILY``), and other words match themselves. In a
reassembly template ``{n}`` is what the n-th ``*`` or ``@group`` element matched (1-based,
pronouns reflected), ``=key`` hands the
input to another keyword's rules, and ``NEWKEY`` gives up on this keyword. Keywords with
``memory`` rules store a reply for later, as ELIZA's MY keyword did.
"""

# ruff: noqa: E501  (the script is data: one rule per line reads better than wrapped)
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GREETING", "KEYWORDS", "NONE", "POST", "PRE", "QUIT", "SYNONYMS", "Keyword", "Rule"]

GREETING = "How do you do. Please tell me your problem."
QUIT = ("bye", "goodbye", "quit")

PRE: dict[str, str] = {
    "dont": "don't",
    "cant": "can't",
    "wont": "won't",
    "recollect": "remember",
    "dreamt": "dreamed",
    "dreams": "dream",
    "maybe": "perhaps",
    "how": "what",
    "when": "what",
    "certainly": "yes",
    "machine": "computer",
    "computers": "computer",
    "were": "was",
    "you're": "you are",
    "i'm": "i am",
    "same": "alike",
}
"""Substitutions made on the input before matching."""

POST: dict[str, str] = {
    "am": "are",
    "your": "my",
    "me": "you",
    "myself": "yourself",
    "yourself": "myself",
    "i": "you",
    "you": "I",
    "my": "your",
    "i'm": "you are",
    "are": "am",
    "was": "were",
}
"""Pronoun reflection applied to the matched parts put into a reply."""

SYNONYMS: dict[str, tuple[str, ...]] = {
    "belief": ("belief", "feel", "think", "believe", "wish"),
    "family": ("family", "mother", "mom", "father", "dad", "sister", "brother", "wife", "children",
               "child", "husband", "son", "daughter"),
    "desire": ("desire", "want", "need"),
    "sad": ("sad", "unhappy", "depressed", "sick"),
    "happy": ("happy", "elated", "glad", "better"),
    "cannot": ("cannot", "can't"),
    "everyone": ("everyone", "everybody", "nobody", "noone"),
    "be": ("be", "am", "is", "are", "was"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: tuple[str, ...]
    replies: tuple[str, ...]
    memory: bool = False


@dataclass(frozen=True, slots=True)
class Keyword:
    word: str
    rank: int
    rules: tuple[Rule, ...]


def _rule(pattern: str, *replies: str, memory: bool = False) -> Rule:
    return Rule(tuple(pattern.split()), replies, memory)


KEYWORDS: tuple[Keyword, ...] = (
    Keyword("sorry", 0, (
        _rule("*", "Please don't apologise.", "Apologies are not necessary.",
              "What feelings do you have when you apologise?", "I've told you that apologies are not required."),
    )),
    Keyword("apologise", 0, (_rule("*", "=sorry"),)),
    Keyword("remember", 5, (
        _rule("* i remember *", "Do you often think of {2}?", "Does thinking of {2} bring anything else to mind?",
              "What else do you remember?", "Why do you remember {2} just now?",
              "What in the present situation reminds you of {2}?", "What is the connection between me and {2}?"),
        _rule("* do you remember *", "Did you think I would forget {2}?",
              "Why do you think I should recall {2} now?", "What about {2}?", "=what",
              "You mentioned {2}."),
        _rule("*", "NEWKEY"),
    )),
    Keyword("if", 3, (
        _rule("* if *", "Do you think its likely that {2}?", "Do you wish that {2}?",
              "What do you think about {2}?", "Really, if {2}?"),
    )),
    Keyword("dreamed", 4, (
        _rule("* i dreamed *", "Really, {2}?", "Have you ever fantasied {2} while you were awake?",
              "Have you dreamed {2} before?", "=dream"),
    )),
    Keyword("dream", 3, (
        _rule("*", "What does that dream suggest to you?", "Do you dream often?",
              "What persons appear in your dreams?", "Don't you believe that dream has something to do with your problem?"),
    )),
    Keyword("perhaps", 0, (
        _rule("*", "You don't seem quite certain.", "Why the uncertain tone?",
              "Can't you be more positive?", "You aren't sure?", "Don't you know?"),
    )),
    Keyword("name", 15, (
        _rule("*", "I am not interested in names.",
              "I've told you before, I don't care about names -- please continue."),
    )),
    Keyword("deutsch", 0, (_rule("*", "I'm sorry, I speak only English."),)),
    Keyword("francais", 0, (_rule("*", "=deutsch"),)),
    Keyword("italiano", 0, (_rule("*", "=deutsch"),)),
    Keyword("espanol", 0, (_rule("*", "=deutsch"),)),
    Keyword("hello", 0, (_rule("*", "How do you do. Please state your problem."),)),
    Keyword("computer", 50, (
        _rule("*", "Do computers worry you?", "Why do you mention computers?",
              "What do you think machines have to do with your problem?",
              "Don't you think computers can help people?", "What about machines worries you?",
              "What do you think about machines?"),
    )),
    Keyword("am", 0, (
        _rule("* am i *", "Do you believe you are {2}?", "Would you want to be {2}?",
              "You wish I would tell you you are {2}.", "What would it mean if you were {2}?", "=what"),
        _rule("*", "Why do you say 'am'?", "I don't understand that."),
    )),
    Keyword("are", 0, (
        _rule("* are you *", "Why are you interested in whether I am {2} or not?",
              "Would you prefer if I weren't {2}?", "Perhaps I am {2} in your fantasies.",
              "Do you sometimes think I am {2}?", "=what"),
        _rule("* are *", "Did you think they might not be {2}?",
              "Would you like it if they were not {2}?", "What if they were not {2}?",
              "Possibly they are {2}."),
    )),
    Keyword("your", 0, (
        _rule("* your *", "Why are you concerned over my {2}?",
              "What about your own {2}?", "Are you worried about someone else's {2}?",
              "Really, my {2}?"),
    )),
    Keyword("was", 2, (
        _rule("* was i *", "What if you were {2}?", "Do you think you were {2}?",
              "Were you {2}?", "What would it mean if you were {2}?", "What does {2} suggest to you?", "=what"),
        _rule("* i was *", "Were you really?", "Why do you tell me you were {2} now?",
              "Perhaps I already know you were {2}."),
        _rule("* was you *", "Would you like to believe I was {2}?",
              "What suggests that I was {2}?", "What do you think?", "Perhaps I was {2}.",
              "What if I had been {2}?"),
        _rule("*", "NEWKEY"),
    )),
    Keyword("i", 0, (
        _rule("* i @desire *", "What would it mean to you if you got {3}?",
              "Why do you want {3}?", "Suppose you got {3} soon.", "What if you never got {3}?",
              "What would getting {3} mean to you?", "What does wanting {3} have to do with this discussion?"),
        _rule("* i am * @sad *", "I am sorry to hear that you are {3}.",
              "Do you think that coming here will help you not to be {3}?",
              "I'm sure it's not pleasant to be {3}.", "Can you explain what made you {3}?"),
        _rule("* i am * @happy *", "How have I helped you to be {3}?",
              "Has your treatment made you {3}?", "What makes you {3} just now?",
              "Can you explain why you are suddenly {3}?"),
        _rule("* i was *", "=was"),
        _rule("* i @belief i *", "Do you really think so?", "But you are not sure you {3}.",
              "Do you really doubt you {3}?"),
        _rule("* i * @belief * you *", "=you"),
        _rule("* i am *", "Is it because you are {2} that you came to me?",
              "How long have you been {2}?", "Do you believe it is normal to be {2}?",
              "Do you enjoy being {2}?"),
        _rule("* i @cannot *", "How do you know you can't {3}?", "Have you tried?",
              "Perhaps you could {3} now.", "Do you really want to be able to {3}?"),
        _rule("* i don't *", "Don't you really {2}?", "Why don't you {2}?",
              "Do you wish to be able to {2}?", "Does that trouble you?"),
        _rule("* i feel *", "Tell me more about such feelings.", "Do you often feel {2}?",
              "Do you enjoy feeling {2}?", "Of what does feeling {2} remind you?"),
        _rule("* i * you *", "Perhaps in your fantasy we {2} each other.",
              "Do you wish to {2} me?", "You seem to need to {2} me.", "Do you {2} anyone else?"),
        _rule("*", "You say {1}?", "Can you elaborate on that?",
              "Do you say {1} for some special reason?", "That's quite interesting."),
    )),
    Keyword("you", 0, (
        _rule("* you remind me of *", "=alike"),
        _rule("* you are *", "What makes you think I am {2}?",
              "Does it please you to believe I am {2}?", "Do you sometimes wish you were {2}?",
              "Perhaps you would like to be {2}."),
        _rule("* you * me *", "Why do you think I {2} you?",
              "You like to think I {2} you -- don't you?", "What makes you think I {2} you?",
              "Really, I {2} you?", "Do you wish to believe I {2} you?",
              "Suppose I did {2} you -- what would that mean?", "Does someone else believe I {2} you?"),
        _rule("* you *", "We were discussing you -- not me.", "Oh, I {2}?",
              "You're not really talking about me -- are you?", "What are your feelings now?"),
    )),
    Keyword("yes", 0, (
        _rule("*", "You seem to be quite positive.", "You are sure.", "I see.", "I understand."),
    )),
    Keyword("no", 0, (
        _rule("*", "Are you saying no just to be negative?", "You are being a bit negative.",
              "Why not?", "Why 'no'?"),
    )),
    Keyword("my", 2, (
        _rule("* my * @family *", "Tell me more about your family.",
              "Who else in your family {4}?", "Your {3}?", "What else comes to mind when you think of your {3}?"),
        _rule("* my *", "Your {2}?", "Why do you say your {2}?",
              "Does that suggest anything else which belongs to you?", "Is it important to you that your {2}?"),
        _rule("* my *", "Lets discuss further why your {2}.", "Earlier you said your {2}.",
              "But your {2}.", "Does that have anything to do with the fact that your {2}?",
              memory=True),
    )),
    Keyword("can", 0, (
        _rule("* can you *", "You believe I can {2} don't you?", "=what",
              "You want me to be able to {2}.", "Perhaps you would like to be able to {2} yourself."),
        _rule("* can i *", "Whether or not you can {2} depends on you more than on me.",
              "Do you want to be able to {2}?", "Perhaps you don't want to {2}.", "=what"),
    )),
    Keyword("what", 0, (
        _rule("*", "Why do you ask?", "Does that question interest you?",
              "What is it you really want to know?", "Are such questions much on your mind?",
              "What answer would please you most?", "What do you think?",
              "What comes to your mind when you ask that?", "Have you asked such questions before?",
              "Have you asked anyone else?"),
    )),
    Keyword("because", 0, (
        _rule("*", "Is that the real reason?", "Don't any other reasons come to mind?",
              "Does that reason seem to explain anything else?", "What other reasons might there be?"),
    )),
    Keyword("why", 0, (
        _rule("* why don't you *", "Do you believe I don't {2}?",
              "Perhaps I will {2} in good time.", "Should you {2} yourself?",
              "You want me to {2}?", "=what"),
        _rule("* why can't i *", "Do you think you should be able to {2}?",
              "Do you want to be able to {2}?", "Do you believe this will help you to {2}?",
              "Have you any idea why you can't {2}?", "=what"),
        _rule("*", "=what"),
    )),
    Keyword("everyone", 2, (
        _rule("* @everyone *", "Really, {2}?", "Surely not {2}.", "Can you think of anyone in particular?",
              "Who, for example?", "You are thinking of a very special person.",
              "Who, may I ask?", "Someone special perhaps.", "You have a particular person in mind, don't you?",
              "Who do you think you're talking about?"),
    )),
    Keyword("everybody", 2, (_rule("*", "=everyone"),)),
    Keyword("nobody", 2, (_rule("*", "=everyone"),)),
    Keyword("noone", 2, (_rule("*", "=everyone"),)),
    Keyword("always", 1, (
        _rule("*", "Can you think of a specific example?", "When?",
              "What incident are you thinking of?", "Really, always?"),
    )),
    Keyword("alike", 10, (
        _rule("*", "In what way?", "What resemblance do you see?",
              "What does that similarity suggest to you?", "What other connections do you see?",
              "What do you suppose that resemblance means?", "What is the connection, do you suppose?",
              "Could there really be some connection?", "How?"),
    )),
    Keyword("like", 10, (
        _rule("* @be * like *", "=alike"),
        _rule("*", "NEWKEY"),
    )),
)  # fmt: skip

NONE: tuple[str, ...] = (
    "I am not sure I understand you fully.",
    "Please go on.",
    "What does that suggest to you?",
    "Do you feel strongly about discussing such things?",
)
"""Replies when no keyword matches and nothing is remembered."""
