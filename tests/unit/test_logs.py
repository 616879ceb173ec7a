import io
import json

from relay.logs import Log


def test_text_lines_carry_level_event_and_quoted_fields():
    out = io.StringIO()
    log = Log(out, "text", "info")
    log.info("connect_failed", backend="primary", error="Connection refused", n=3)
    line = out.getvalue().strip()
    ts, level, event, *rest = line.split(" ", 3)
    assert ts.endswith("Z") and "T" in ts
    assert (level, event) == ("info", "connect_failed")
    assert rest == ['backend=primary error="Connection refused" n=3']


def test_json_lines_are_one_object_with_ts_level_event_and_fields():
    out = io.StringIO()
    log = Log(out, "json", "info")
    log.warning("accept_paused", listener="redis", seconds=0.25)
    record = json.loads(out.getvalue())
    assert record["level"] == "warning" and record["event"] == "accept_paused"
    assert record["listener"] == "redis" and record["seconds"] == 0.25
    assert "ts" in record


def test_level_threshold_drops_lower_levels():
    out = io.StringIO()
    log = Log(out, "text", "warning")
    log.info("quiet")
    log.debug("quieter")
    assert out.getvalue() == ""
    assert not log.debug_enabled
    log.error("loud")
    assert "loud" in out.getvalue()


def test_exception_carries_error_and_traceback():
    out = io.StringIO()
    log = Log(out, "json", "info")
    try:
        raise ValueError("odd")
    except ValueError as exc:
        log.exception("internal_error", exc, where="session")
    record = json.loads(out.getvalue())
    assert record["error"] == "ValueError: odd"
    assert "Traceback" in record["traceback"]
