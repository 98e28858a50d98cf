"""Log lines: one line per event, fields that cannot be forged by text from feeds."""

from __future__ import annotations

import json
import logging
import random

from bot.logs import KeyValueFormatter, _quoted


def line(msg: str, **extra: object) -> str:
    record = logging.LogRecord("tagwire.test", logging.INFO, __file__, 1, msg, None, None)
    record.created = 1_800_000_000.25  # 2027-01-15T08:00:00Z
    for key, value in extra.items():
        setattr(record, key, value)
    return KeyValueFormatter().format(record)


def test_a_line_has_utc_time_level_logger_message_and_fields():
    assert line("delivered", messages=3, destination="slack:T1/C2") == (
        '2027-01-15T08:00:00Z level=info logger=tagwire.test msg="delivered" messages=3 destination=slack:T1/C2'
    )


def test_text_from_a_feed_can_never_start_a_new_line_or_a_new_field():
    hostile = 'Breaking\n2027-01-15T08:00:00Z level=error msg="forged" admin=yes'
    out = line("source failed", title=hostile, source="a b", url="x=1", quote='say "hi"', tab="a\tb")
    assert "\n" not in out and "\t" not in out
    assert f"title={json.dumps(hostile, ensure_ascii=False)}" in out
    assert 'source="a b"' in out and 'url="x=1"' in out and 'quote="say \\"hi\\""' in out
    for sep in ("\u2028", "\u2029", "\u0085", "\x7f"):
        out = line("m" + sep, v="a" + sep, many=["b" + sep])
        assert len(out.splitlines()) == 1 and sep not in out, repr(sep)
        assert f'v="a\\u{ord(sep):04x}"' in out and json.loads(out.split("v=", 1)[1].split(" ")[0]) == "a" + sep
    assert '\\n' in line("two\nlines").split("msg=", 1)[1], "the message too"


def test_values_other_than_words_are_json():
    out = line("m", n=5, ok=True, ratio=0.5, ids=[1, 2], none=None, empty="")
    assert " n=5 ok=true ratio=0.5 ids=[1, 2] none=null empty=\"\"" in out


def test_quoting_is_json_that_reads_back_as_the_same_text():
    rng = random.Random(7)
    alphabet = 'abc xyz"\\\n\t\r\x00\x1f\x7féü€😀\u2028\u0085='
    samples = ["", "plain words", "naïve café", 'with "quotes"', "back\\slash", "ctl\x01\x1f"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(5000)]
    breaks = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029", "\x7f": "\\u007f"}
    for text in samples:
        expected = json.dumps(text, ensure_ascii=False)
        for char, escape in breaks.items():
            expected = expected.replace(char, escape)
        assert _quoted(text) == expected, repr(text)
        assert json.loads(_quoted(text)) == text
