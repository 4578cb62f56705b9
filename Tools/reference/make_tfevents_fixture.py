#!/usr/bin/env python3
"""Generate the golden TensorBoard event file for Lathe's Swift tests.

Writes, relative to the repository root:
    Tests/Fixtures/tensorboard/events.out.tfevents.golden
        written by tensorboard's own EventFileWriter (TFRecord framing, masked CRC-32C):
        its file_version event ("brain.Event:2"), then one Event per scalar
        {wall_time, step, summary {value {tag, simple_value}}}.
    Tests/Fixtures/tensorboard/expected.json
        {"generator", "tensorboard_version", "file_version_wall_time",
         "scalars": [{"tag", "step", "wall_time", "value"}, ...]}
        in file order.  Floats are strings (Python's repr, the shortest decimal
        that round-trips the double; JSON number parsers are not all exact):
        wall times are the doubles written, "value" is the float32 value as a
        double, or "nan", "inf", "-inf".

The first record also carries source_metadata {writer: "tensorboard.summary.
writer.event_file_writer"} (Event field 10), which Lathe does not write; the
scalar records are byte-for-byte what Lathe writes for the same wall times.

The script re-reads the file with EventAccumulator and exits non-zero if it does
not return the scalars written.  Needs only the `tensorboard` package (no TF):

    python3 -m venv /tmp/tbvenv && /tmp/tbvenv/bin/pip install tensorboard
    /tmp/tbvenv/bin/python Tools/reference/make_tfevents_fixture.py
"""
import json
import math
import os
import shutil
import struct
import sys
import tempfile

import tensorboard
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "tensorboard")

BASE_TIME = 1700000000.25
# (tag, step, value): step 0, a large int64 step, a negative value, values that
# are not exactly representable in float32, and non-finite values.
SCALARS = [
    ("train/loss", 0, 2.302585092994046),
    ("train/accuracy", 0, 0.1),
    ("train/loss", 1, 1.75),
    ("train/loss", 2, 0.4312),
    ("val/loss", 2, 0.5),
    ("val/accuracy", 2, 0.912),
    ("train/lr", 3, -0.0001),
    ("train/loss", 1099511627776, 1e-7),
    ("train/grad_norm", 5, float("nan")),
    ("train/grad_norm", 6, float("inf")),
    ("train/grad_norm", 7, float("-inf")),
    ("unicode/ünï", 8, 3.0),
]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def encode(x):
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(f32(x))


def main():
    tmp = tempfile.mkdtemp()
    try:
        writer = EventFileWriter(tmp)
        expected = []
        for i, (tag, step, value) in enumerate(SCALARS):
            wall = BASE_TIME + i
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            writer.add_event(event_pb2.Event(wall_time=wall, step=step, summary=summary))
            expected.append({"tag": tag, "step": step, "wall_time": repr(wall), "value": encode(value)})
        writer.close()
        (name,) = os.listdir(tmp)
        path = os.path.join(tmp, name)

        # Self-check with TensorBoard's reader.
        acc = EventAccumulator(path)
        acc.Reload()
        got = [(t, e.step, e.wall_time, e.value) for t in acc.Tags()["scalars"] for e in acc.Scalars(t)]
        want = [(e["tag"], e["step"], float(e["wall_time"]), f32(v)) for e, (_, _, v) in zip(expected, SCALARS)]
        key = lambda r: (r[0], r[1])
        same = lambda a, b: a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
        ok = len(got) == len(want) and all(
            all(same(a, b) for a, b in zip(g, w)) for g, w in zip(sorted(got, key=key), sorted(want, key=key)))
        if not ok:
            print("EventAccumulator mismatch:\n", got, "\n", want)
            return 1

        # The first record's wall time (file_version event).
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            fh.read(4)
            first = event_pb2.Event.FromString(fh.read(n))
        assert first.file_version == "brain.Event:2", first

        os.makedirs(OUT, exist_ok=True)
        shutil.copyfile(path, os.path.join(OUT, "events.out.tfevents.golden"))
        doc = {
            "generator": "Tools/reference/make_tfevents_fixture.py (tensorboard EventFileWriter)",
            "tensorboard_version": tensorboard.__version__,
            "file_version_wall_time": repr(first.wall_time),
            "scalars": expected,
        }
        with open(os.path.join(OUT, "expected.json"), "w") as fh:
            json.dump(doc, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        print(f"{len(expected)} scalars; {os.path.getsize(path)} bytes; tensorboard {tensorboard.__version__}; "
              f"EventAccumulator read back {len(got)} scalars OK")
        return 0
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
