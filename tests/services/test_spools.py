"""Spool stock and the usage ledger on a real database: who may keep stock, loading by QR code, weigh-ins, labels,
and job ends that deduct exactly once through replays, restarts and concurrent deliveries (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from fabpanel.db.engine import create_engine, session_factory
from fabpanel.db.models import Printer, PrintJob
from fabpanel.live.state import LiveState
from fabpanel.services.machines import Refused
from fabpanel.services.spool_labels import qr_path
from fabpanel.services.spool_ledger import SpoolLedger, usage_t
from fabpanel.services.spools import FilamentForm, SpoolForm, SpoolService, VendorForm

from ..lab import ADMIN_USER, MAINTAINER_USER, MEMBER_USER, create_lab

BASE_URL = 'https://fab.example.org/panel/'


@dataclass
class Stock:
    engine: AsyncEngine
    live: LiveState
    service: SpoolService
    url: str
    filament_id: int = 0

    async def spool(self, grams: float = 1000.0, **kw: object) -> int:
        return await self.service.create_spool(
            ADMIN_USER, SpoolForm(filament_id=self.filament_id, initial_grams=grams, **kw)
        )  # type: ignore[arg-type]

    async def printer(self, name: str = 'MK4') -> int:
        async with session_factory(self.engine)() as session:
            printer = Printer(name=name, kind='simulated', address=f'sim://{name}')
            session.add(printer)
            await session.commit()
            assert printer.id is not None
            return printer.id

    async def ended_job(
        self,
        printer_id: int,
        outcome: str = 'done',
        grams: float | None = 40.0,
        progress: float | None = None,
        member_id: int | None = 1,
    ) -> int:
        now = datetime.now(UTC)
        async with session_factory(self.engine)() as session:
            job = PrintJob(
                printer_id=printer_id,
                member_id=member_id,
                file_name='part.gcode',
                state=outcome,
                started_at=now - timedelta(hours=1),
                ended_at=now,
                grams_planned=grams,
                progress=progress,
            )
            session.add(job)
            await session.commit()
            assert job.id is not None
            return job.id

    async def remaining(self, spool_id: int) -> float:
        row = await self.service.get(spool_id)
        assert row is not None
        return row.remaining_grams

    async def usages(self, spool_id: int) -> list[tuple[int | None, float, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(usage_t.c.print_job_id, usage_t.c.grams, usage_t.c.reason)
                .where(usage_t.c.spool_id == spool_id)
                .order_by(usage_t.c.id)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]


async def make_stock(url: str) -> AsyncIterator[Stock]:
    await create_lab(url)
    engine = create_engine(url)
    live = LiveState()
    service = SpoolService(engine, live, BASE_URL)
    stock = Stock(engine, live, service, url)
    vendor = await service.create_vendor(ADMIN_USER, VendorForm(name='Prusament'))
    stock.filament_id = await service.create_filament(
        ADMIN_USER,
        FilamentForm(
            vendor_id=vendor,
            name='Galaxy Black',
            material='pla',
            colour_hex='#1a1a1a',
            price_per_kg=25.0,
            low_stock_grams=1500,
        ),
    )
    try:
        yield stock
    finally:
        await engine.dispose()


@pytest.fixture
async def stock(sqlite_url: str) -> AsyncIterator[Stock]:
    async for s in make_stock(sqlite_url):
        yield s


@pytest.fixture
async def any_stock(database_url: str) -> AsyncIterator[Stock]:
    async for s in make_stock(database_url):
        yield s


async def refused(coro, code: str) -> Refused:  # noqa: ANN001
    with pytest.raises(Refused) as e:
        await coro
    assert e.value.code == code, (e.value.code, e.value.info)
    return e.value


# ---- stock keeping ------------------------------------------------------------------------------------------------


async def test_only_staff_keep_stock_and_forms_are_checked(stock: Stock) -> None:
    s = stock.service
    await refused(s.create_vendor(MEMBER_USER, VendorForm(name='Bambu')), 'forbidden')
    assert await s.create_vendor(MAINTAINER_USER, VendorForm(name='Bambu'))
    await refused(s.create_vendor(ADMIN_USER, VendorForm(name='Bambu')), 'name_taken')
    vendor = next(v.id for v in await s.vendors() if v.name == 'Prusament')
    await refused(s.create_filament(ADMIN_USER, FilamentForm(vendor_id=vendor, name='Galaxy Black')), 'name_taken')
    bad = FilamentForm(vendor_id=vendor, name='X', colour_hex='red;background:url(x)')
    await refused(s.create_filament(ADMIN_USER, bad), 'colour_invalid')
    await refused(
        s.create_filament(ADMIN_USER, FilamentForm(vendor_id=vendor, name='X', diameter_mm=17.5)), 'out_of_range'
    )
    await refused(stock.spool(-5), 'out_of_range')
    spool_id = await stock.spool(lot='L-42', location='Shelf A')
    row = await s.get(spool_id)
    assert row is not None
    assert (row.material, row.remaining_grams, row.location, row.lot) == ('PLA', 1000, 'Shelf A', 'L-42')
    assert row.remaining_m == pytest.approx(335.3, abs=0.1)
    assert len(row.code) == 10 and await s.by_code(f'  {row.code.lower()} ') == row
    assert await s.by_code('../../etc') is None
    await refused(s.delete_filament(ADMIN_USER, stock.filament_id), 'in_use')  # it has a spool
    await s.archive(ADMIN_USER, spool_id)
    assert await s.spools() == [] and [r.id for r in await s.spools(archived=True)] == [spool_id]


async def test_loading_by_code_moves_the_previous_spool_back_to_its_shelf(stock: Stock) -> None:
    s = stock.service
    mk4, xl = await stock.printer('MK4'), await stock.printer('XL')
    first, second = await stock.spool(location='Shelf A'), await stock.spool(location='Shelf B')
    code = (await s.get(second)).code  # type: ignore[union-attr]
    await refused(s.load_by_code(MEMBER_USER, mk4, code), 'forbidden')
    await refused(s.load_by_code(ADMIN_USER, mk4, 'NOPE'), 'spool_not_found')
    await s.load(ADMIN_USER, mk4, first)
    loaded = await s.load_by_code(MAINTAINER_USER, mk4, code.lower())
    assert (loaded.id, loaded.printer_id, loaded.printer_name) == (second, mk4, 'MK4')
    back = await s.get(first)
    assert back is not None and (back.printer_id, back.location) == (None, 'Shelf A')
    await s.load(ADMIN_USER, xl, second)  # a spool is in one printer only: it leaves the MK4
    assert await s.loaded(mk4) is None and (await s.loaded(xl)).id == second  # type: ignore[union-attr]
    await s.set_shelf(ADMIN_USER, second, 'Dry box 2')
    assert await s.loaded(xl) is None and (await s.get(second)).location == 'Dry box 2'  # type: ignore[union-attr]
    await s.archive(ADMIN_USER, first)
    await refused(s.load(ADMIN_USER, mk4, first), 'spool_archived')


async def test_weigh_in_corrects_the_stock_through_the_ledger(stock: Stock) -> None:
    spool_id = await stock.spool(empty_spool_grams=180)
    result = await stock.service.weigh_in(MAINTAINER_USER, spool_id, 180 + 612.5)
    assert (result.spool.remaining_grams, result.corrected_g, result.clamped) == (612.5, 387.5, False)
    await refused(stock.service.weigh_in(MAINTAINER_USER, spool_id, 90), 'below_empty_spool')
    await refused(stock.service.weigh_in(MEMBER_USER, spool_id, 500), 'forbidden')
    empty = await stock.service.weigh_in(ADMIN_USER, spool_id, 170)
    assert (empty.spool.remaining_grams, empty.clamped) == (0, True)
    assert await stock.usages(spool_id) == [(None, 387.5, 'weigh_in'), (None, 612.5, 'weigh_in')]


async def test_label_is_the_scan_url_as_qr_with_member_text_escaped(stock: Stock) -> None:
    vendor = (await stock.service.vendors())[0].id
    stock.filament_id = await stock.service.create_filament(
        ADMIN_USER,
        FilamentForm(vendor_id=vendor, name='<script>alert(1)</script>', material='PETG', colour_hex='#FF8800'),
    )
    spool_id = await stock.spool(lot='a&b"<img src=x>')
    row = await stock.service.get(spool_id)
    assert row is not None
    svg = await stock.service.label_svg(spool_id)
    assert '<script' not in svg and '<img' not in svg
    assert '&lt;script&gt;alert(1)&lt;/script&gt;' in svg and 'a&amp;b"&lt;img src=x&gt;' in svg
    url = f'https://fab.example.org/panel/spools/scan/{row.code}'
    assert stock.service.scan_url(row.code) == url and qr_path(url)[0] in svg  # the code encodes exactly that URL
    assert 'fill="#FF8800"' in svg
    png = await stock.service.label_png(spool_id)
    assert png.startswith(b'\x89PNG\r\n\x1a\n')
    await refused(stock.service.label_svg(9999), 'spool_not_found')


async def test_low_stock_reorder_and_member_usage(stock: Stock) -> None:
    s = stock.service
    printer = await stock.printer()
    spool_id = await stock.spool(1000)
    await stock.spool(600)
    assert await s.low_stock() == []  # 1600 g, threshold 1500
    ledger = SpoolLedger(stock.engine, stock.live)
    await s.load(ADMIN_USER, printer, spool_id)
    await ledger.settle(await stock.ended_job(printer, 'done', 100.0, member_id=1))
    await ledger.settle(await stock.ended_job(printer, 'cancelled', 200.0, progress=0.5, member_id=5))
    low = await s.low_stock()
    assert [(x.filament.name, x.remaining_g, x.spools) for x in low] == [('Galaxy Black', 1400, 2)]
    assert [(r.spools, r.cost) for r in await s.reorder()] == [(1, 15.0)]  # one more 600 g spool, like the last
    now = datetime.now(UTC)
    staff_view = await s.member_usage(ADMIN_USER, now - timedelta(days=1), now + timedelta(minutes=1))
    assert [(r.name, r.grams, r.cost) for r in staff_view] == [('Giulia Rossi', 100, 2.5), ('Elsa Gialli', 100, 2.5)]
    own = await s.member_usage(MEMBER_USER, now - timedelta(days=1), now + timedelta(minutes=1))
    assert [r.member_id for r in own] == [1]
    assert await s.member_usage(ADMIN_USER, now - timedelta(days=2), now - timedelta(days=1)) == []


# ---- the ledger: exactly once -------------------------------------------------------------------------------------


async def test_a_job_ending_twice_and_after_a_restart_deducts_once(any_stock: Stock) -> None:
    stock = any_stock
    printer = await stock.printer()
    spool_id = await stock.spool(1000)
    await stock.service.load(ADMIN_USER, printer, spool_id)
    ledger = SpoolLedger(stock.engine, stock.live)
    await ledger.start()
    job = await stock.ended_job(printer, 'done', 42.5)
    stock.live.events.job_ended.emit((printer, job, 'done'))
    stock.live.events.job_ended.emit((printer, job, 'done'))  # a replay of the same end
    await ledger.stop()
    assert await stock.remaining(spool_id) == 957.5
    # a panel restart: new engine, new ledger; the fleet reports the same end again
    await stock.engine.dispose()
    engine = create_engine(stock.url)
    try:
        live = LiveState()
        again = SpoolLedger(engine, live)
        await again.start()
        live.events.job_ended.emit((printer, job, 'done'))
        await again.stop()
        service = SpoolService(engine, live, BASE_URL)
        assert (await service.get(spool_id)).remaining_grams == 957.5  # type: ignore[union-attr]
    finally:
        await engine.dispose()
    assert await stock.usages(spool_id) == [(job, 42.5, 'job')]


async def test_concurrent_deliveries_deduct_once(any_stock: Stock) -> None:
    stock = any_stock
    printer = await stock.printer()
    spool_id = await stock.spool(1000)
    await stock.service.load(ADMIN_USER, printer, spool_id)
    engines = [create_engine(stock.url) for _ in range(4)]  # separate pools: truly concurrent transactions
    try:
        ledgers = [SpoolLedger(e, stock.live) for e in engines]
        jobs = [await stock.ended_job(printer, 'done', 10.0 + i) for i in range(5)]
        results = await asyncio.gather(*(ledger.settle(job) for job in jobs for ledger in ledgers))
    finally:
        for e in engines:
            await e.dispose()
    assert sum(1 for r in results for s in r if s.new) == 5  # one winner per job
    assert await stock.remaining(spool_id) == 1000 - sum(10.0 + i for i in range(5))
    assert sorted(j for j, _, _ in await stock.usages(spool_id)) == sorted(jobs)


async def test_failed_jobs_deduct_the_part_printed(any_stock: Stock) -> None:
    stock = any_stock
    printer = await stock.printer()
    spool_id = await stock.spool(1000)
    ledger = SpoolLedger(stock.engine, stock.live)
    nothing_loaded = await stock.ended_job(printer, 'failed', 80.0, progress=0.5)
    assert await ledger.settle(nothing_loaded) == []  # no spool in the printer: nobody's stock
    await stock.service.load(ADMIN_USER, printer, spool_id)
    failed = await stock.ended_job(printer, 'failed', 80.0, progress=0.25)
    cancelled = await stock.ended_job(printer, 'cancelled', 80.0, progress=None)
    unknown = await stock.ended_job(printer, 'done', None)
    for job in (failed, cancelled, unknown):
        await ledger.settle(job)
    assert await stock.remaining(spool_id) == 980
    assert await stock.usages(spool_id) == [
        (failed, 20.0, 'partial'),
        (cancelled, 0.0, 'progress_unknown'),
        (unknown, 0.0, 'grams_unknown'),
    ]


async def test_an_end_lost_in_a_crash_is_settled_at_start_and_before_a_spool_swap(stock: Stock) -> None:
    printer = await stock.printer()
    first, second = await stock.spool(1000), await stock.spool(1000)
    await stock.service.load(ADMIN_USER, printer, first)
    lost = await stock.ended_job(printer, 'done', 30.0)  # recorded, but the event never reached the ledger
    ledger = SpoolLedger(stock.engine, stock.live)
    await ledger.start()
    await ledger.stop()
    assert await stock.remaining(first) == 970
    lost_again = await stock.ended_job(printer, 'done', 5.0)
    await stock.service.load(ADMIN_USER, printer, second)  # the swap settles it against the spool it ran on
    assert (await stock.remaining(first), await stock.remaining(second)) == (965, 1000)
    await ledger.start()  # nothing left to catch up
    await ledger.stop()
    assert [j for j, _, _ in await stock.usages(first)] == [lost, lost_again]


async def test_the_panel_wires_the_ledger(tmp_path, sqlite_url: str) -> None:  # noqa: ANN001
    from fabpanel.app import Panel

    from ..conftest import make_settings, wait_for

    await create_lab(sqlite_url)
    panel = Panel(make_settings(tmp_path, sqlite_url))
    await panel.start(gateway=False)
    try:
        stock = Stock(panel.engine, panel.live, panel.spools, sqlite_url)
        vendor = await panel.spools.create_vendor(ADMIN_USER, VendorForm(name='V'))
        stock.filament_id = await panel.spools.create_filament(ADMIN_USER, FilamentForm(vendor_id=vendor, name='F'))
        printer, spool_id = await stock.printer(), await stock.spool(1000)
        await panel.spools.load(ADMIN_USER, printer, spool_id)
        assert panel.spools.scan_url('X').startswith(panel.settings.web.base_url.rstrip('/') + '/spools/scan/')
        job = await stock.ended_job(printer, 'done', 12.0)
        changed: list[int] = []
        panel.live.events.spool_changed.subscribe(changed.append)
        panel.live.events.job_ended.emit((printer, job, 'done'))
        await wait_for(lambda: changed == [spool_id])
        assert await stock.remaining(spool_id) == 988
    finally:
        await panel.stop()
