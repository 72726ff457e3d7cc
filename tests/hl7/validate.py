#!/usr/bin/env python3
"""Strict HL7 v2.6 ORU^R01 check of the messages vitalsd sends (see docs/hl7.md).

Reads messages from the files named on the command line (or stdin): MLLP frames, `hl7` outbox
records (segments ending CR LF, a blank line between messages) or plain CR-separated text; a
message starts at each MSH segment. Each message is

  * parsed and validated by hl7apy at VALIDATION_LEVEL.STRICT as a v2.6 ORU_R01 (required
    fields such as PID-3 and PID-5, segment groups, data types, lengths);
  * checked for what hl7apy does not check: MSH-9/MSH-12, MSH-10 unique across all messages,
    OBX-1 numbering, OBX-2 consistent with OBX-5 (NM: one number; NA: numbers separated by
    `^`), OBX-11 from HL7 table 0085 (`X` exactly when OBX-5 is empty), OBX-8 from table 0078,
    a `P` (preliminary) row only with an abnormal flag and the "released after review" note,
    and well-formed escape sequences in every field;
  * optionally compared with `--expect SEG-F[.C]=TEXT`: the unescaped text of that field or
    component in the message's first such segment must equal TEXT (how escaping is checked).

Prints one line per message (`ok` or its errors) and exits 1 when any message fails, when no
message is found or fewer than `--min` are; 2 when hl7apy is missing.
"""

import argparse
import re
import sys

try:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message
except ImportError as e:  # pragma: no cover - the test command installs it
    print(f"validate.py: hl7apy is not installed ({e}); run scripts/test", file=sys.stderr)
    sys.exit(2)

NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
# HL7 table 0085 (observation result status) and table 0078 (abnormal flags, v2.6).
RESULT_STATUS = set("CDFINOPRSUWX")
ABNORMAL_FLAGS = {
    "L", "H", "LL", "HH", "<", ">", "N", "A", "AA", "S", "R", "I", "NEG", "POS",
    "U", "D", "B", "W", "MS", "VS", "NR", "RR", "QCF", "TOX", "LU", "HU",
}
ESCAPE = re.compile(r"\\([FSTRE]|X[0-9A-Fa-f]*|H|N|\.[a-z]+[0-9+-]*|C[0-9A-Fa-f]*|M[0-9A-Fa-f]*|Z[^\\]*)\\")
RELEASED_NOTE = "failed a hard plausibility limit"


def split_messages(data):
    text = data.decode("utf-8")
    text = text.replace("\x0b", "").replace("\x1c", "\r")
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    messages, current = [], None
    for seg in text.split("\r"):
        if not seg.strip():
            continue
        if seg.startswith("MSH"):
            current = [seg]
            messages.append(current)
        elif current is None:
            raise SystemExit(f"validate.py: segment before any MSH: {seg[:20]!r}")
        else:
            current.append(seg)
    return messages


def unescape(s):
    table = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}
    return re.sub(r"\\([FSTRE])\\", lambda m: table[m.group(1)], s)


def fields(seg):
    """SEG-n is index n (for MSH too: index 1 is the field separator)."""
    f = seg.split("|")
    if f[0] == "MSH":
        f.insert(1, "|")
    return f


def get(segments, spec):
    """The raw text of `SEG-F` or `SEG-F.C` in the first such segment, None when absent."""
    m = re.fullmatch(r"([A-Z0-9]{3})-(\d+)(?:\.(\d+))?", spec)
    if not m:
        raise SystemExit(f"validate.py: bad field spec {spec!r}")
    name, f, c = m.group(1), int(m.group(2)), m.group(3)
    for seg in segments:
        if seg.split("|")[0] == name:
            fs = fields(seg)
            value = fs[f] if f < len(fs) else ""
            if c is not None:
                comps = value.split("~")[0].split("^")
                value = comps[int(c) - 1] if int(c) <= len(comps) else ""
            return value
    return None


def check(segments, seen_ids, expects):
    errors = []
    er7 = "\r".join(segments) + "\r"
    try:
        msg = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        msg.validate()
        if msg.name != "ORU_R01":
            errors.append(f"hl7apy reads it as {msg.name}, not ORU_R01")
    except Exception as e:  # hl7apy raises many types; each is a failure
        errors.append(f"hl7apy strict: {type(e).__name__}: {e}")

    msh = fields(segments[0])
    if get(segments, "MSH-9") != "ORU^R01^ORU_R01":
        errors.append(f"MSH-9 is {get(segments, 'MSH-9')!r}")
    if get(segments, "MSH-12") != "2.6":
        errors.append(f"MSH-12 is {get(segments, 'MSH-12')!r}")
    control = msh[10] if len(msh) > 10 else ""
    if not control:
        errors.append("MSH-10 is empty")
    elif control in seen_ids:
        errors.append(f"MSH-10 {control} repeats an earlier message's")
    seen_ids.add(control)
    if not (get(segments, "PID-3.1") or ""):
        errors.append("PID-3.1 (patient identifier) is empty")
    if not (get(segments, "PID-5") or ""):
        errors.append("PID-5 (patient name) is empty")

    for seg in segments:
        for i, f in enumerate(fields(seg)):
            if seg.startswith("MSH") and i <= 2:
                continue
            rest = ESCAPE.sub("", f)
            if "\\" in rest:
                errors.append(f"{seg[:3]}-{i}: a `\\` that starts no escape sequence: {f[:40]!r}")

    n, preliminary, order_notes = 0, False, []
    in_order = False
    for seg in segments:
        name = seg[:3]
        f = fields(seg)
        if name == "OBR":
            in_order, order_notes = True, []
        elif name == "NTE" and in_order and n == 0:
            order_notes.append(unescape(f[3] if len(f) > 3 else ""))
        if name != "OBX":
            continue
        n += 1
        at = f"OBX {n}"
        g = lambda k: f[k] if k < len(f) else ""
        if g(1) != str(n):
            errors.append(f"{at}: OBX-1 is {g(1)!r}, expected {n}")
        kind, value, status, flag = g(2), g(5), g(11), g(8)
        if status not in RESULT_STATUS:
            errors.append(f"{at}: OBX-11 {status!r} is not in HL7 table 0085")
        if flag and flag not in ABNORMAL_FLAGS:
            errors.append(f"{at}: OBX-8 {flag!r} is not in HL7 table 0078")
        if status == "X":
            if value:
                errors.append(f"{at}: OBX-11 X (cannot be obtained) with a value {value[:20]!r}")
            continue
        if not value:
            errors.append(f"{at}: empty OBX-5 with OBX-11 {status!r} (expected X)")
            continue
        if kind == "NM":
            if not NUMBER.match(value):
                errors.append(f"{at}: OBX-2 NM but OBX-5 {value[:20]!r} is not a number")
        elif kind == "NA":
            bad = [c for c in value.split("^") if not NUMBER.match(c)]
            if bad:
                errors.append(f"{at}: OBX-2 NA but OBX-5 has non-numbers {bad[:3]!r}")
        else:
            errors.append(f"{at}: OBX-2 {kind!r} is not a value type vitalsd sends")
        if status == "P":
            preliminary = True
        elif status != "F":
            errors.append(f"{at}: OBX-11 {status!r}, vitalsd sends F, P or X")
    if n == 0:
        errors.append("no OBX segment")
    if preliminary:
        if not any(RELEASED_NOTE in t for t in order_notes):
            errors.append("P rows without the 'released after review' note after OBR")
        flagged = [s for s in segments if s.startswith("OBX|") and fields(s)[8:9] not in ([""], [])]
        if not flagged:
            errors.append("P rows without any abnormal flag in OBX-8")

    for spec, want in expects:
        raw = get(segments, spec)
        got = None if raw is None else unescape(raw)
        if got != want:
            errors.append(f"{spec}: {got!r}, expected {want!r}")
    return control, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="files to read; stdin when none")
    ap.add_argument("--min", type=int, default=1, help="fail unless this many messages")
    ap.add_argument("--expect", action="append", default=[], metavar="SEG-F[.C]=TEXT")
    a = ap.parse_args()
    expects = []
    for e in a.expect:
        spec, _, want = e.partition("=")
        expects.append((spec, want))
    data = b"".join(open(p, "rb").read() for p in a.files) if a.files else sys.stdin.buffer.read()
    messages = split_messages(data)
    seen, failed = set(), 0
    for i, segments in enumerate(messages, 1):
        control, errors = check(segments, seen, expects)
        if errors:
            failed += 1
            for e in errors:
                print(f"message {i} (MSH-10 {control}): {e}")
        else:
            print(f"message {i} (MSH-10 {control}): ok")
    print(f"{len(messages)} messages, {failed} failed")
    if failed or len(messages) < max(a.min, 1):
        if len(messages) < max(a.min, 1):
            print(f"expected at least {max(a.min, 1)} messages")
        sys.exit(1)


if __name__ == "__main__":
    main()
