"""Datasets that ship with labelloop (see README.md here for sources and licenses)."""

from importlib.resources import files
from pathlib import Path


def sms_spam_path() -> Path:
    """The SMS Spam Collection (CC BY 4.0): 5,574 messages, columns ``text,label``."""
    return Path(str(files("labelloop.demo.data") / "sms_spam.csv"))


SMS_SPAM_LABELS = {
    "ham": "an ordinary personal message between people who know each other",
    "spam": "unsolicited advertising, prize or lottery claims, premium-rate offers or scams",
}
