"""The table `refurbgrade grade` ends with (`serving.summary`): outcomes, and the devices whose kind was
read from their photos as other than the default phone."""

from __future__ import annotations

from collections import Counter

from serving.summary import (
    MAX_DEVICE_ROWS,
    device_line,
    keep_line,
    kind_read,
    outcome,
    print_summary,
    tally,
)

PROBS = {"Premium": 0.1, "Good": 0.2, "Fair": 0.6, "Unlistable": 0.1}


def test_outcome_of_a_grading():
    assert outcome({"backmarket": "Fair"}, False) == "graded"
    assert outcome({"backmarket": "Fair"}, True) == "needs_review"
    assert outcome({"backmarket": "ungradable", "ctia": "ungradable"}, True) == "ungradable"


def test_only_a_kind_read_from_the_photos_as_not_a_phone_is_counted():
    assert kind_read("laptop", "photos") == "read as laptop"
    assert kind_read("phone", "photos") is None  # what it would have been anyway
    assert kind_read("laptop", "caller") is None and kind_read("laptop", None) is None


def test_the_summary_says_how_many_devices_were_read_as_laptops(capsys):
    print_summary(Counter({"graded": 2, "needs_review": 3, "read as laptop": 2}))
    err = capsys.readouterr().err
    assert "needs review" in err and "3" in err
    assert "2 devices graded as laptops, read from the photos: give --device-kind" in err
    print_summary(Counter({"graded": 1, "read as laptop": 1}))
    assert "1 device graded as a laptop, read from the photos" in capsys.readouterr().err
    print_summary(Counter({"graded": 1}))
    assert "graded as" not in capsys.readouterr().err


def test_a_device_row_says_why_it_is_not_one_grade_better():
    reasons = {
        "backmarket": {
            "Premium": ["1 scratch on the screen; Premium allows none"],
            "Good": ["1 scratch on the screen, the longest 8 mm; Good allows none", "a second reason"],
        },
        "ctia": {"A": ["ctia's reason"]},
    }
    grades = {"backmarket": "Fair", "ctia": "B"}
    sent = {"backmarket": True, "ctia": True}
    line = device_line("front.jpg", grades, {"backmarket": PROBS}, reasons, sent)
    assert line.why == "1 scratch on the screen, the longest 8 mm; Good allows none"  # the grade just above
    assert line.grades == {"backmarket": ("Fair", 0.6), "ctia": ("B", 0.0)}  # no probabilities: 0
    assert line.needs_review
    top = device_line("a.jpg", {"backmarket": "Premium"}, {"backmarket": PROBS}, {"backmarket": {}}, {})
    assert top.why == "nothing counted against the top grade"
    # No grade: the photo's verdict from the advice, else the reason under "ungradable".
    none = {"backmarket": {"ungradable": ["no usable photo of the device: nothing to grade from"]}}
    told = {"backmarket": ["photo 1: too blurry, retake it in focus", "send a front and a back photo"]}
    dark = device_line("b.jpg", {"backmarket": "ungradable"}, {}, none, sent, told)
    assert dark.why == "photo 1: too blurry, retake it in focus"
    assert device_line("b.jpg", {"backmarket": "ungradable"}, {}, none, sent).why.startswith(
        "no usable photo"
    )


def test_the_devices_table_lists_a_few_devices_and_only_counts_many(capsys):
    rows = [
        device_line(f"p{k}.jpg", {"backmarket": "Fair"}, {"backmarket": PROBS}, {"backmarket": {}}, {})
        for k in range(3)
    ]
    print_summary(Counter({"graded": 3}), devices=rows)
    err = capsys.readouterr().err
    assert "devices" in err and all(f"p{k}.jpg" in err for k in range(3)) and "Fair (0.60)" in err
    many: list = []
    for _ in range(3 * MAX_DEVICE_ROWS):  # a large batch keeps only enough rows to know it is large
        keep_line(many, rows[0])
    assert len(many) == MAX_DEVICE_ROWS + 1
    print_summary(Counter({"graded": 3 * MAX_DEVICE_ROWS}), devices=many)
    err = capsys.readouterr().err
    assert f"over {MAX_DEVICE_ROWS} devices: each one's grades and reasons are in the JSON lines" in err
    assert "p0.jpg" not in err


def test_the_review_column_and_the_counts_name_the_standards_that_send_a_device_to_review(capsys):
    """Graded to every standard, as by default, a cracked phone goes to review for CTIA alone (its E, damage
    inside the display, no photo tells): the row says "ctia", not "yes", and the count under the
    outcomes says how many devices each standard sent."""
    grades = {"backmarket": "Unlistable", "ctia": "D", "r2": "C6"}
    probs = {"backmarket": {"Unlistable": 0.97}, "ctia": {"D": 0.93}, "r2": {"C6": 0.97}}
    reasons = {"backmarket": {"Fair": ["1 crack on the screen; Fair allows none"]}}
    flags = [
        {"backmarket": False, "ctia": True, "r2": False},  # a shattered screen
        {"backmarket": True, "ctia": True, "r2": True},  # an intact front, its back not shown
        {"backmarket": False, "ctia": False, "r2": False},
    ]
    rows = [device_line(f"p{k}.jpg", grades, probs, reasons, f) for k, f in enumerate(flags)]
    assert [r.review_cell for r in rows] == ["ctia", "all", "no"]
    assert [r.needs_review for r in rows] == [True, True, False]
    alone = device_line("q.jpg", {"ctia": "D"}, probs, {}, {"ctia": True})
    assert alone.review_cell == "ctia"  # one standard: its name, not "all"
    counts, kept = Counter(), []
    for row in rows:
        tally(counts, kept, row, row.needs_review, "phone", "caller")
    assert counts["graded"] == 1 and counts["needs_review"] == 2 and kept == rows
    # A device no standard could grade is counted as such, and by no standard's review; a kind read from
    # its photos is counted too.
    none = device_line("u.jpg", dict.fromkeys(grades, "ungradable"), {}, {}, dict.fromkeys(grades, True))
    other = Counter()
    tally(other, [], none, True, "laptop", "photos")
    assert other == Counter({"ungradable": 1, "read as laptop": 1})
    print_summary(counts, devices=rows, standards=list(grades))
    err = capsys.readouterr().err
    assert "│ ctia " in err and "│ all " in err
    assert "sent to review, of 3 graded devices, by standard: backmarket 1, ctia 2, r2 1" in err
    print_summary(Counter({"graded": 1, "needs_review": 1, "review by ctia": 1}), standards=["ctia"])
    assert "by standard" not in capsys.readouterr().err  # one standard: the outcomes say it all


def test_a_device_row_sent_to_review_says_why(capsys):
    """The review column names the standards; the why column now also says what sends the device there:
    the answer's first review reason, and how many more its JSON line holds."""
    reasons_to_review = [
        "backmarket: top grade Premium has probability 0.52 < 0.94",
        "no usable back photo: graded without it (backmarket: it could show worse)",
    ]
    sent = device_line(
        "front.jpg",
        {"backmarket": "Premium"},
        {"backmarket": PROBS},
        {},
        {"backmarket": True},
        None,
        reasons_to_review,
    )
    assert sent.to_review == "backmarket: top grade Premium has probability 0.52 < 0.94 (+1 more in the JSON)"
    assert sent.why_cell == (
        "nothing counted against the top grade\nreview: backmarket: top grade Premium has probability "
        "0.52 < 0.94 (+1 more in the JSON)"
    )
    one = device_line(
        "f.jpg", {"backmarket": "Fair"}, {}, {}, {"backmarket": True}, None, reasons_to_review[:1]
    )
    assert one.to_review == reasons_to_review[0]
    # Not sent to review, or not graded at all (its why already says what is wrong): nothing added.
    kept = device_line("g.jpg", {"backmarket": "Fair"}, {}, {}, {"backmarket": False}, None, [])
    assert kept.to_review == "" and kept.why_cell == kept.why
    none = device_line(
        "u.jpg",
        {"backmarket": "ungradable"},
        {},
        {},
        {"backmarket": True},
        None,
        ["backmarket: ungradable, no usable photo of the device"],
    )
    assert none.to_review == "" and none.why_cell == none.why
    print_summary(Counter({"needs_review": 1}), devices=[sent])
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert "review: backmarket: top grade Premium has probability 0.52 < 0.94" in err
