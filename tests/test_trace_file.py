"""The wire trace holds transcripts and contact details: private to its owner and bounded."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from kiosk.realtime.connection import TraceWriter


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_trace_is_0600_and_rotates_at_its_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "wire.jsonl"
    path.write_text("")
    path.chmod(0o644)  # a trace from an older version, readable by all
    trace = TraceWriter(path, max_bytes=4000)
    for i in range(500):
        trace.write(float(i), "in", {"type": "conversation.item.input_audio_transcription.completed",
                                     "transcript": f"my e-mail is visitor{i}@example.com"})  # fmt: skip
    trace.close()
    older = tmp_path / "wire.jsonl.1"
    assert mode(path) == 0o600 and mode(older) == 0o600
    assert path.stat().st_size <= 4000 and older.stat().st_size <= 4000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wire.jsonl", "wire.jsonl.1"]  # never a third
    last = [json.loads(line) for line in path.read_text().splitlines()]
    assert last[-1]["t"] == 499.0  # the newest events are kept, whole lines only


def test_a_new_trace_is_never_readable_by_others(tmp_path: Path) -> None:
    trace = TraceWriter(tmp_path / "new.jsonl")
    trace.write(0.0, "out", {"type": "session.update"})
    trace.close()
    assert mode(tmp_path / "new.jsonl") == 0o600
