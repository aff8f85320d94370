"""The table `refurbgrade grade` ends with (`serving.summary`): outcomes, and the devices whose kind was
read from their photos as other than the default phone."""

from __future__ import annotations

from collections import Counter

from serving.summary import kind_read, outcome, print_summary


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
