"""Where the answerer's knowledge files are read: beside the routing rules (read once per
container, as the rules are) or in the stack's media bucket under knowledge/ (looked at again at
most once a minute, and read again only when it changed: one conditional GET)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kefu import tenancy
from kefu.knowledge import Knowledge, parse_knowledge, read_file
from kefu.routing.rules import KnowledgeFile
from kefu.s3_documents import CHECK_SECONDS, S3Documents

S3_CHECK_SECONDS = CHECK_SECONDS  # an S3 knowledge file is looked at again at most this often

class KnowledgeFiles:
    def __init__(self, base_dir: Callable[[], Path | None], bucket: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._base_dir = base_dir
        self._files: dict[str, Knowledge] = {}
        self._s3: S3Documents[Knowledge] = S3Documents(bucket, parse_knowledge, clock=clock)

    def __call__(self, ref: KnowledgeFile) -> Knowledge:
        if ref.s3 is not None:
            # A corp's knowledge is under its own prefix (provider mode).
            knowledge = self._s3.get(tenancy.qualify(ref.s3))
            if knowledge is None:  # not with missing_ok off: a missing object raises
                raise ValueError(f"knowledge {ref.s3}: not found")
            return knowledge
        held = self._files.get(ref.key())
        if held is None:
            base = self._base_dir()
            if base is None:
                raise ValueError("rules from an SSM parameter name knowledge in S3 only")
            held = self._files[ref.key()] = read_file(str(base / str(ref.path)))
        return held
