"""How OctoPrint's payloads read as PrinterReports (pure; the real-server checks are in test_octoprint.py)."""

from __future__ import annotations

import pytest

from fabpanel.core.printers import PrinterReport, PrinterState, Temperature
from fabpanel.printers.octoprint_state import apply_status, console_lines, state_from_flags, status_from_rest

FLAGS = dict.fromkeys(
    (
        'operational',
        'printing',
        'cancelling',
        'pausing',
        'resuming',
        'finishing',
        'closedOrError',
        'error',
        'paused',
        'ready',
        'sdReady',
    ),
    False,
)


@pytest.mark.parametrize(
    ('set_flags', 'text', 'state'),
    [
        ({'operational', 'ready'}, 'Operational', PrinterState.IDLE),
        ({'operational', 'printing'}, 'Printing', PrinterState.PRINTING),
        ({'operational', 'printing', 'finishing'}, 'Finishing', PrinterState.PRINTING),
        ({'operational', 'pausing', 'paused'}, 'Pausing', PrinterState.PAUSING),
        ({'operational', 'paused'}, 'Paused', PrinterState.PAUSED),
        ({'operational', 'paused', 'resuming'}, 'Resuming', PrinterState.PRINTING),
        ({'operational', 'cancelling', 'printing'}, 'Cancelling', PrinterState.CANCELLING),
        ({'closedOrError'}, 'Offline', PrinterState.OFFLINE),
        ({'closedOrError'}, 'Offline after error', PrinterState.ERROR),  # flags lose the error once closed
        ({'closedOrError', 'error'}, 'Error', PrinterState.ERROR),
        (set(), 'Connecting', PrinterState.CONNECTING),
    ],
)
def test_state_from_flags(set_flags: set[str], text: str, state: PrinterState) -> None:
    assert state_from_flags({**FLAGS, **dict.fromkeys(set_flags, True)}, text) == state


@pytest.mark.parametrize(
    ('text', 'state'),
    [
        ('Operational', PrinterState.IDLE),
        ('Printing from SD', PrinterState.PRINTING),
        ('Paused', PrinterState.PAUSED),
        ('Offline after error', PrinterState.ERROR),
        ('Error: kill() called', PrinterState.ERROR),
        ('Offline', PrinterState.OFFLINE),
        ('Detecting serial connection', PrinterState.CONNECTING),
        ('Something new', PrinterState.OFFLINE),
    ],
)
def test_state_from_text_alone(text: str, state: PrinterState) -> None:
    assert state_from_flags({}, text) == state


def test_printing_payload_gives_progress_and_temperatures() -> None:
    payload = {
        'state': {'text': 'Printing', 'flags': {**FLAGS, 'operational': True, 'printing': True}, 'error': ''},
        'job': {'file': {'name': 'benchy.gcode', 'display': 'Benchy.gcode'}},
        'progress': {'completion': 42.5, 'printTime': 60, 'printTimeLeft': 120},
        'temps': [
            {'tool0': {'actual': 20.0, 'target': 0.0}},
            {
                'tool0': {'actual': 199.5, 'target': 200.0},
                'bed': {'actual': 59.0, 'target': 60.0},
                'chamber': {'actual': None, 'target': None},
            },
        ],
    }
    report = apply_status(PrinterReport(), payload)
    assert report.state == PrinterState.PRINTING
    assert report.job is not None and report.job.file_name == 'Benchy.gcode'
    assert report.job.fraction == pytest.approx(0.425) and report.job.remaining_s == 120
    assert report.nozzle == Temperature(actual=199.5, target=200.0) and report.bed.target == 60.0
    assert report.chamber is None


def test_idle_payload_keeps_temperatures_and_drops_the_job() -> None:
    before = PrinterReport(state=PrinterState.PRINTING, nozzle=Temperature(actual=200.0, target=200.0))
    report = apply_status(
        before,
        {
            'state': {'text': 'Operational', 'flags': {**FLAGS, 'operational': True}},
            'progress': {'completion': 100.0},
            'temps': [],
        },
    )
    assert report.state == PrinterState.IDLE and report.job is None
    assert report.nozzle.actual == 200.0


def test_rest_answers_when_octoprint_has_no_printer() -> None:
    payload = status_from_rest({'state': 'Offline after error', 'error': 'Thermal Runaway'}, {})
    report = apply_status(PrinterReport(), payload)
    assert report.state == PrinterState.ERROR and report.message == 'Thermal Runaway'


def test_console_lines() -> None:
    assert console_lines(['Send: N5 M105*33', 'Recv: ok T:20', 'Changing monitoring state']) == [
        ('>', 'N5 M105*33'),
        ('<', 'ok T:20'),
    ]
