"""Reads a calendar Rapport wrote with an independent iCalendar parser
(python's icalendar) and checks what a calendar app relies on: every
event and to-do parses, has a UID and a start, a repeating meeting's rule
and skipped days read back, and its start keeps its time zone."""
import sys

import icalendar

path = sys.argv[1]
with open(path, "rb") as f:
    cal = icalendar.Calendar.from_ical(f.read())

events = [c for c in cal.walk() if c.name == "VEVENT"]
todos = [c for c in cal.walk() if c.name == "VTODO"]
assert events and todos, f"{path}: {len(events)} events, {len(todos)} to-dos"
for c in events + todos:
    assert c.get("UID"), f"no UID: {c}"
    assert c.get("DTSTAMP"), f"no DTSTAMP: {c}"
for e in events:
    assert e.get("DTSTART") is not None, f"no start: {e}"
repeating = [e for e in events if e.get("RRULE")]
assert repeating, "no repeating meeting"
rule = repeating[0]["RRULE"]
assert rule["FREQ"] == ["WEEKLY"], rule
start = repeating[0].decoded("DTSTART")
assert str(start.tzinfo) in ("Europe/Berlin", "CET"), start.tzinfo
exdates = repeating[0].get("EXDATE")
assert exdates, "no EXDATE"
print(f"{path}: {len(events)} events, {len(todos)} to-dos read by icalendar {icalendar.__version__}")
