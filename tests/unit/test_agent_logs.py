"""Structured logs: logfmt lines with the fields a pipeline filters on."""

import logging

from clew.agent.logs import LogfmtFormatter


def test_logfmt_line_with_fields_and_quoting() -> None:
    record = logging.LogRecord("clew.agent", logging.WARNING, __file__, 1, "rejected", None, None)
    record.fields = {"object": "Service ns/web", "field": "spec.ports[0].port", "reason": 'is "bad"'}
    line = LogfmtFormatter().format(record)
    assert line.startswith("time=") and " level=warning logger=clew.agent msg=rejected " in line
    assert 'object="Service ns/web" field=spec.ports[0].port reason="is \\"bad\\""' in line
    assert "\n" not in line
