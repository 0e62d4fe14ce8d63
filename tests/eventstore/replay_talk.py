"""The conversation the replay tests record and replay: paraphrases that `recall` finds again,
with a configuration where every earlier memory is relevant (threshold -1) and the prompt's
history shows only the last two messages, so recall fills the prompt with what was said before."""

TEXTS = [
    "I feel sad about my job",
    "My mother never listens to me",
    "My job makes me sad every day",
    "Nobody listens to me at home",
    "I am tired of my work",
    "My mother is always busy",
    "Work is all I think about",
]
PLUGINS = ("audit", "recall", "knowledge")
AGENTS = {"history": 2}
SETTINGS = {"recall": {"threshold": -1.0, "k": 4}, "knowledge": {"threshold": -1.0}}
