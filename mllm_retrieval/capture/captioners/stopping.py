"""Stop generating once the answer is complete: every labelled line the prompt asks for is written.

The default prompt asks for a `Tags:` line and a `Caption:` line. A model that has written both (each
ended by a line break) has answered; whatever it writes next is not used, so generating it only costs
time. Prompts that ask for no labelled lines stop at the model's end-of-sequence token as before.
"""

from __future__ import annotations

import re
from typing import Any

LABELS = ("Tags", "Caption")


def required_labels(prompt: str) -> tuple[str, ...]:
    """The labels (`Tags`, `Caption`) whose `Label:` the prompt spells out for the answer."""
    return tuple(label for label in LABELS if re.search(rf"\b{label}:", prompt))


def answered(text: str, labels: tuple[str, ...]) -> bool:
    """True once each label has a line with content after it, ended by a line break."""
    return bool(labels) and all(
        re.search(rf"(?im)^[\W_]*{label}s?[\W_]*:[ \t*_]*\S[^\n]*\n", text) for label in labels
    )


def answered_criteria(tokenizer: Any, prompt: str, prompt_length: int) -> Any:
    """A transformers StoppingCriteriaList that ends each row of a batch once it has answered."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    labels = required_labels(prompt)

    class Answered(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            new = input_ids[:, prompt_length:]
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            return torch.tensor([answered(t, labels) for t in texts], device=input_ids.device)

    return StoppingCriteriaList([Answered()] if labels else [])
