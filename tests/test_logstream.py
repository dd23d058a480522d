import io
import logging

from background_task.runtime.logstream import LogStream


def test_lines_are_logged_and_flush_works(caplog):
    original = io.StringIO()
    stream = LogStream(logging.getLogger("tests.logstream"), logging.INFO, original)
    with caplog.at_level(logging.INFO, logger="tests.logstream"):
        stream.write("one\ntwo")
        stream.flush()
        stream.write("\n")
    assert [r.getMessage() for r in caplog.records] == ["one", "two"]
    assert not stream.isatty() and stream.writable()


def test_a_handler_writing_to_the_stream_does_not_recurse():
    original = io.StringIO()
    logger = logging.getLogger("tests.logstream.recursive")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    stream = LogStream(logger, logging.INFO, original)
    logger.addHandler(logging.StreamHandler(stream))
    try:
        stream.write("hello\n")
    finally:
        logger.handlers.clear()
    assert "hello" in original.getvalue()
