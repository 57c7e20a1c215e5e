"""How OctoPrint's state, temperature and job payloads (REST and push alike) read as a PrinterReport."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fabpanel.core.printers import ACTIVE_STATES, JobProgress, PrinterReport, PrinterState, Temperature

# OctoPrint's connection state texts (util/comm.py getStateString) for when no flags are at hand
_TEXT_STATES = {
    'operational': PrinterState.IDLE,
    'printing': PrinterState.PRINTING,
    'starting': PrinterState.PRINTING,
    'sending file to sd': PrinterState.PRINTING,
    'resuming': PrinterState.PRINTING,
    'finishing': PrinterState.PRINTING,
    'pausing': PrinterState.PAUSING,
    'paused': PrinterState.PAUSED,
    'cancelling': PrinterState.CANCELLING,
    'offline after error': PrinterState.ERROR,
    'error': PrinterState.ERROR,
    'offline': PrinterState.OFFLINE,
    'closed': PrinterState.OFFLINE,
    'opening serial connection': PrinterState.CONNECTING,
    'detecting serial connection': PrinterState.CONNECTING,
    'connecting': PrinterState.CONNECTING,
}


def state_from_text(text: str) -> PrinterState:
    lower = text.strip().lower()
    for prefix, state in _TEXT_STATES.items():
        if lower == prefix or lower.startswith(prefix + ' ') or lower.startswith(prefix + ':'):
            return state
    return PrinterState.OFFLINE


def state_from_flags(flags: dict[str, Any], text: str = '') -> PrinterState:
    """OctoPrint's state flags (`/api/printer` state.flags, push `current.state.flags`) as one PrinterState."""
    by_text = state_from_text(text)
    # after closing on an error OctoPrint drops its connection object: the flags then say only "closed"
    if not flags or by_text == PrinterState.ERROR:
        return by_text
    if flags.get('error'):
        return PrinterState.ERROR
    if flags.get('cancelling'):
        return PrinterState.CANCELLING
    if flags.get('pausing'):
        return PrinterState.PAUSING
    if flags.get('paused') and not flags.get('resuming'):
        return PrinterState.PAUSED
    if flags.get('printing') or flags.get('resuming') or flags.get('finishing'):
        return PrinterState.PRINTING
    if flags.get('operational'):
        return PrinterState.IDLE
    if flags.get('closedOrError'):
        return PrinterState.OFFLINE
    return PrinterState.CONNECTING  # neither closed nor operational: OctoPrint is opening the port


def _temperature(reading: Any, previous: Temperature | None) -> Temperature | None:
    if not isinstance(reading, dict) or reading.get('actual') is None:
        return previous
    target = reading.get('target')
    return Temperature(actual=float(reading['actual']), target=float(target) if target is not None else None)


def apply_temperatures(report: PrinterReport, sample: dict[str, Any]) -> PrinterReport:
    """One temperature sample: `/api/printer` `temperature` or the newest entry of a push message's `temps`."""
    return replace(
        report,
        nozzle=_temperature(sample.get('tool0'), report.nozzle) or report.nozzle,
        bed=_temperature(sample.get('bed'), report.bed) or report.bed,
        chamber=_temperature(sample.get('chamber'), report.chamber),
    )


def job_progress(job: dict[str, Any], progress: dict[str, Any]) -> JobProgress:
    file = job.get('file') or {}
    completion = progress.get('completion')
    print_time = progress.get('printTime')
    left = progress.get('printTimeLeft')
    return JobProgress(
        file_name=str(file.get('display') or file.get('name') or ''),
        fraction=min(max(float(completion) / 100.0, 0.0), 1.0) if completion is not None else None,
        elapsed_s=float(print_time) if print_time is not None else None,
        remaining_s=float(left) if left is not None else None,
    )


def apply_status(report: PrinterReport, payload: dict[str, Any]) -> PrinterReport:
    """A push `current`/`history` payload, or the REST answers merged into the same shape
    ({'state': ..., 'job': ..., 'progress': ..., 'temps': [...]})."""
    state_info = payload.get('state') or {}
    if isinstance(state_info, str):  # /api/job answers with the state text only
        state_info = {'text': state_info}
    state = state_from_flags(state_info.get('flags') or {}, state_info.get('text', ''))
    error = str(state_info.get('error') or '')
    message = (
        error if state == PrinterState.ERROR and error else (report.message if state == PrinterState.ERROR else '')
    )
    job = job_progress(payload.get('job') or {}, payload.get('progress') or {}) if state in ACTIVE_STATES else None
    report = replace(report, state=state, job=job, message=message)
    temps = payload.get('temps')
    if temps:
        report = apply_temperatures(report, temps[-1])
    return report


def status_from_rest(job: dict[str, Any], printer: dict[str, Any]) -> dict[str, Any]:
    """`/api/job` and `/api/printer` answers (the latter {} when OctoPrint has no printer connected) merged into
    the push payload's shape, for apply_status."""
    state = {
        'text': job.get('state', ''),
        'error': job.get('error', ''),
        'flags': (printer.get('state') or {}).get('flags') or {},
    }
    temperature = printer.get('temperature')
    return {
        'state': state,
        'job': job.get('job') or {},
        'progress': job.get('progress') or {},
        'temps': [temperature] if temperature else [],
    }


def console_lines(logs: list[str]) -> list[tuple[str, str]]:
    """OctoPrint's terminal log lines as (direction, line) for the staff console; other chatter is dropped."""
    lines = []
    for entry in logs:
        if entry.startswith('Send: '):
            lines.append(('>', entry[6:]))
        elif entry.startswith('Recv: '):
            lines.append(('<', entry[6:]))
    return lines
