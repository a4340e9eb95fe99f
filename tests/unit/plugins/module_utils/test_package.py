"""module_utils/package.py: the function's archive depends only on names and contents."""

import time
import zipfile

from fakes import write_source

from ansible_collections.guardrails.ec2.plugins.module_utils import package


def test_same_content_gives_the_same_bytes_whatever_the_metadata(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = [
        write_source(tmp_path / "a/handler.py", "x = 1\n", mtime=1_000_000),
        write_source(tmp_path / "a/extra.py", "y\n"),
    ]
    second = [
        write_source(tmp_path / "b/extra.py", "y\n", mtime=time.time(), mode=0o755),
        write_source(tmp_path / "b/handler.py", "x = 1\n", mode=0o600),
    ]
    one = package.build_archive(package.read_sources(first))
    two = package.build_archive(package.read_sources(second))
    assert one == two
    assert package.code_sha256(one) == package.code_sha256(two)


def test_archive_is_readable_with_fixed_metadata(tmp_path):
    data = package.build_archive({"b.py": b"b", "a.py": b"a"})
    path = tmp_path / "f.zip"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["a.py", "b.py"]
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {(i.external_attr >> 16) & 0o777 for i in infos} == {0o644}
        assert archive.read("a.py") == b"a"


def test_changed_content_changes_the_digest():
    assert package.build_archive({"h.py": b"1"}) != package.build_archive({"h.py": b"2"})
