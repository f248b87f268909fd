"""The prompt template shared by the embedding cache and the preference data.

A persona record becomes the prompt ``TEMPLATE.format(question=...)``; the
two possible completions are the single tokens " Yes" and " No". The hidden
state used as the embedding x of a prompt is the last one of the prompt,
so the embedding chapters and the fine-tuning chapter see the same text.

The cue ends with "Answer:" and no trailing space, because the answers
carry their leading space (" Yes" is one token in the tokenizers the book
uses); a trailing space in the prompt would make the tokenizer split the
answer differently.
"""

from __future__ import annotations

TEMPLATE = "{question}\nAnswer:"
TEMPLATE_NAME = "question-answer-v1"


def format_prompt(question: str, template: str = TEMPLATE) -> str:
    """Return the prompt text for a persona question."""
    if "{question}" not in template:
        raise ValueError(f"template must contain '{{question}}', got {template!r}")
    if template.endswith(" "):
        raise ValueError("template must not end with a space: the answers start with one")
    return template.format(question=question)
