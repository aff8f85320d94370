"""The table `refurbgrade grade` ends with (`serving.summary`): outcomes, and the devices whose kind was
read from their photos as other than the default phone."""

from __future__ import annotations

from collections import Counter

from serving.summary import MAX_DEVICE_ROWS, device_line, keep_line, kind_read, outcome, print_summary

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
    line = device_line("front.jpg", {"backmarket": "Fair", "ctia": "B"}, {"backmarket": PROBS}, reasons, True)
    assert line.why == "1 scratch on the screen, the longest 8 mm; Good allows none"  # the grade just above
    assert line.grades == {"backmarket": ("Fair", 0.6), "ctia": ("B", 0.0)}  # no probabilities: 0
    assert line.needs_review
    top = device_line("a.jpg", {"backmarket": "Premium"}, {"backmarket": PROBS}, {"backmarket": {}}, False)
    assert top.why == "nothing counted against the top grade"
    # No grade: the photo's verdict from the advice, else the reason under "ungradable".
    none = {"backmarket": {"ungradable": ["no usable photo of the device: nothing to grade from"]}}
    told = {"backmarket": ["photo 1: too blurry, retake it in focus", "send a front and a back photo"]}
    dark = device_line("b.jpg", {"backmarket": "ungradable"}, {}, none, True, told)
    assert dark.why == "photo 1: too blurry, retake it in focus"
    assert device_line("b.jpg", {"backmarket": "ungradable"}, {}, none, True).why.startswith(
        "no usable photo"
    )


def test_the_devices_table_lists_a_few_devices_and_only_counts_many(capsys):
    rows = [
        device_line(f"p{k}.jpg", {"backmarket": "Fair"}, {"backmarket": PROBS}, {"backmarket": {}}, False)
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
