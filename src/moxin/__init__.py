"""moxin: build fully open large language models, from raw text to a verified MOF release."""

__version__ = "0.1.0"
