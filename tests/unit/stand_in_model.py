"""A model process with a stand-in pipeline instead of spaCy, for ModelProcess's unit tests.

``python -m tests.unit.stand_in_model FD_IN FD_OUT`` runs :func:`functions.runtime.model_process.child_main`
with a pipeline that marks every capitalised word as an ORG. A few texts steer it: ``sleep:S`` holds the
model for S seconds, ``crash`` ends the process at once with exit code 9 (as the kernel's OOM killer
would), ``refuse`` is refused like a text over the tokenizer guard's limit (413). ``STAND_IN_LOAD_ERROR``
in the environment makes loading fail with that message; while the file ``STAND_IN_SLOW_LOAD_FLAG`` names
exists, loading takes 20 s.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from functions.runtime.errors import PayloadTooLarge
from functions.runtime.model_process import child_main


class _Span:
    def __init__(self, text: str, start: int):
        self.text, self.label_, self.start_char, self.end_char = text, "ORG", start, start + len(text)


class _Doc:
    def __init__(self, text: str):
        self.ents, offset = [], 0
        for word in text.split():
            start = text.index(word, offset)
            offset = start + len(word)
            if word[:1].isupper():
                self.ents.append(_Span(word, start))


class StandInPipeline:
    meta = {"lang": "xx", "name": "stand_in", "version": "1.2.3"}
    pipe_names = ["ner"]

    def pipe(self, texts, batch_size=128):
        for text in texts:
            if text.startswith("sleep:"):
                time.sleep(float(text.split(":", 1)[1]))
            elif text == "crash":
                os._exit(9)
            yield _Doc(text)

    def memory_zone(self):
        return contextlib.nullcontext()


def _load(model: str, pipeline: str):
    flag = os.environ.get("STAND_IN_SLOW_LOAD_FLAG")
    if flag and os.path.exists(flag):
        time.sleep(20)
    error = os.environ.get("STAND_IN_LOAD_ERROR")
    if error:
        raise OSError(error)
    return StandInPipeline()


if __name__ == "__main__":
    import functions.runtime.tokenizer_guard as guard

    original = guard.pipe

    def pipe(nlp, texts, batch_size):
        for text, doc in zip(texts, original(nlp, texts, batch_size), strict=True):
            yield PayloadTooLarge("the text has too many tokens", code="text_too_long") if text == "refuse" else doc

    guard.pipe = pipe
    sys.exit(child_main(int(sys.argv[1]), int(sys.argv[2]), load=_load))
