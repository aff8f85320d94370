"""serving.photo_batch: which files `refurbgrade grade` grades and which of them make one device."""

from pathlib import Path

from serving.photo_batch import Batch


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_each_photo_is_a_device_unless_grouped_by_folder(tmp_path):
    a1 = _touch(tmp_path / "a" / "front.jpg")
    a2 = _touch(tmp_path / "a" / "back.jpg")
    b1 = _touch(tmp_path / "b" / "front.jpg")
    _touch(tmp_path / "a" / ".DS_Store")  # hidden: never a photo
    single = _touch(tmp_path / "loose.jpg")
    paths = (tmp_path / "a", tmp_path / "b", single, tmp_path / "gone")

    apart = Batch(paths)
    assert apart.missing() == [tmp_path / "gone"]
    assert apart.devices() == [[a2], [a1], [b1], [single]]  # a folder's files in name order

    grouped = Batch(paths, device_per_folder=True)
    # the loose photo's folder is tmp_path, a folder of its own: three devices
    assert grouped.devices() == [[a2, a1], [b1], [single]]


def test_the_lines_go_to_the_file_when_one_is_named(tmp_path, capsys):
    out = tmp_path / "grades.jsonl"
    with Batch((), jsonl=out).output() as f:
        f.write("{}\n")
    assert out.read_text() == "{}\n"
    with Batch(()).output() as f:
        f.write("line\n")
    assert capsys.readouterr().out == "line\n"
