"""Filament stock: vendors, filaments and spools (kept by admins and staff), where each spool is (a shelf or a
printer, loaded by scanning its QR label), weigh-ins, printable labels, low stock, the reorder list and who used
how much. The job-end deductions live in spool_ledger."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fabpanel.core import spools as core
from fabpanel.db.models import Filament, Vendor
from fabpanel.live.state import LiveState
from fabpanel.services import spool_labels
from fabpanel.services.auth import CurrentUser
from fabpanel.services.machines import Refused
from fabpanel.services.spool_forms import (
    FilamentForm,
    FilamentRow,
    SpoolForm,
    SpoolRow,
    VendorForm,
    VendorRow,
    clean_code,
    clean_filament,
    clean_spool,
    clean_vendor,
    filament_row,
    new_code,
    require_stock_keeper,
    spool_row,
)
from fabpanel.services.spool_ledger import (
    REASON_WEIGH_IN,
    printer_t,
    settle_job,
    spool_t,
    unsettled_jobs,
    usage_t,
    write_retrying,
)
from fabpanel.services.spool_stock import SpoolReports

log = logging.getLogger(__name__)
vendor_t: sa.Table = Vendor.__table__  # type: ignore[attr-defined]
filament_t: sa.Table = Filament.__table__  # type: ignore[attr-defined]

__all__ = [
    'FilamentForm',
    'FilamentRow',
    'Refused',
    'SpoolForm',
    'SpoolRow',
    'SpoolService',
    'VendorForm',
    'VendorRow',
    'WeighInResult',
]

LOAD_SETTLE = timedelta(days=1)  # unsettled jobs this recent are charged to the spool they ran on before a swap

SPOOLS = (
    sa.select(
        spool_t,
        filament_t.c.name.label('filament'),
        filament_t.c.material,
        filament_t.c.colour_hex,
        filament_t.c.diameter_mm,
        filament_t.c.density_g_cm3,
        vendor_t.c.name.label('vendor'),
        printer_t.c.id.label('printer_id'),
        printer_t.c.name.label('printer_name'),
    )
    .join(filament_t, filament_t.c.id == spool_t.c.filament_id)
    .join(vendor_t, vendor_t.c.id == filament_t.c.vendor_id)
    .outerjoin(printer_t, printer_t.c.loaded_spool_id == spool_t.c.id)
)
FILAMENTS = sa.select(filament_t, vendor_t.c.name.label('vendor')).join(
    vendor_t, vendor_t.c.id == filament_t.c.vendor_id
)


@dataclass(kw_only=True, slots=True)
class WeighInResult:
    spool: SpoolRow
    corrected_g: float  # grams the ledger had wrong: positive when more had been used than it knew
    clamped: bool  # the scale read a little under the empty spool: taken as empty


class SpoolService(SpoolReports):
    def __init__(self, engine: AsyncEngine, live: LiveState, base_url: str) -> None:
        self.engine, self.live, self.base_url = engine, live, base_url

    # ---- reads (anyone signed in) ---------------------------------------------------------------------------

    async def vendors(self) -> list[VendorRow]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(vendor_t).order_by(vendor_t.c.name))
            return [VendorRow(id=r.id, name=r.name) for r in rows]

    async def filaments(self) -> list[FilamentRow]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(FILAMENTS.order_by(vendor_t.c.name, filament_t.c.name))
            return [filament_row(r) for r in rows]

    async def spools(self, *, archived: bool = False) -> list[SpoolRow]:
        q = SPOOLS.where(spool_t.c.archived.is_(archived)).order_by(vendor_t.c.name, filament_t.c.name, spool_t.c.id)
        async with self.engine.connect() as conn:
            return [spool_row(r) for r in await conn.execute(q)]

    async def get(self, spool_id: int) -> SpoolRow | None:
        async with self.engine.connect() as conn:
            return await self._spool(conn, spool_id)

    async def by_code(self, code: str) -> SpoolRow | None:
        try:
            code = clean_code(code)
        except Refused:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(SPOOLS.where(spool_t.c.code == code))).first()
        return None if row is None else spool_row(row)

    async def _spool(self, conn: AsyncConnection, spool_id: int) -> SpoolRow | None:
        row = (await conn.execute(SPOOLS.where(spool_t.c.id == spool_id))).first()
        return None if row is None else spool_row(row)

    # ---- vendors and filaments ------------------------------------------------------------------------------

    async def create_vendor(self, actor: CurrentUser, form: VendorForm) -> int:
        require_stock_keeper(actor)
        return await self._insert(vendor_t, clean_vendor(form))

    async def update_vendor(self, actor: CurrentUser, vendor_id: int, form: VendorForm) -> None:
        require_stock_keeper(actor)
        await self._update(vendor_t, vendor_id, clean_vendor(form))

    async def delete_vendor(self, actor: CurrentUser, vendor_id: int) -> None:
        require_stock_keeper(actor)
        await self._delete(vendor_t, vendor_id)

    async def create_filament(self, actor: CurrentUser, form: FilamentForm) -> int:
        require_stock_keeper(actor)
        return await self._insert(filament_t, clean_filament(form))

    async def update_filament(self, actor: CurrentUser, filament_id: int, form: FilamentForm) -> None:
        require_stock_keeper(actor)
        await self._update(filament_t, filament_id, clean_filament(form))

    async def delete_filament(self, actor: CurrentUser, filament_id: int) -> None:
        require_stock_keeper(actor)
        await self._delete(filament_t, filament_id)

    # ---- spools ---------------------------------------------------------------------------------------------

    async def create_spool(self, actor: CurrentUser, form: SpoolForm) -> int:
        require_stock_keeper(actor)
        values = clean_spool(form)
        for _ in range(5):  # a clash of two random 10-character codes is next to impossible; retry anyway
            try:
                spool_id = await self._insert(spool_t, {**values, 'code': new_code()})
            except Refused as e:
                if e.code != 'name_taken':
                    raise
                continue
            self.live.events.spool_changed.emit(spool_id)
            return spool_id
        raise Refused('try_again')

    async def update_spool(self, actor: CurrentUser, spool_id: int, form: SpoolForm) -> None:
        """Edits the spool's facts; its remaining grams change only through the ledger (jobs, weigh-ins)."""
        require_stock_keeper(actor)
        values = clean_spool(form)
        values.pop('remaining_grams')
        await self._update(spool_t, spool_id, values)
        self.live.events.spool_changed.emit(spool_id)

    async def archive(self, actor: CurrentUser, spool_id: int, archived: bool = True) -> None:
        """An archived spool is used up or gone: out of the stock sums and out of its printer."""
        require_stock_keeper(actor)

        async def work(conn: AsyncConnection) -> None:
            await self._must_exist(conn, spool_id)
            if archived:
                await self._unload_spool(conn, spool_id)
            await conn.execute(sa.update(spool_t).where(spool_t.c.id == spool_id).values(archived=archived))

        await write_retrying(self.engine, work)
        self.live.events.spool_changed.emit(spool_id)

    async def delete_spool(self, actor: CurrentUser, spool_id: int) -> None:
        """Only a spool the ledger never touched (entered by mistake); others are archived."""
        require_stock_keeper(actor)

        async def work(conn: AsyncConnection) -> None:
            await self._unload_spool(conn, spool_id)
            used = await conn.scalar(sa.select(sa.func.count()).where(usage_t.c.spool_id == spool_id))
            if used:
                raise Refused('in_use', count=used)
            await conn.execute(sa.delete(spool_t).where(spool_t.c.id == spool_id))

        await write_retrying(self.engine, work)
        self.live.events.spool_changed.emit(spool_id)

    # ---- where a spool is -----------------------------------------------------------------------------------

    async def set_shelf(self, actor: CurrentUser, spool_id: int, shelf: str) -> None:
        """Put a spool on a shelf (out of its printer, if it was loaded)."""
        require_stock_keeper(actor)
        location = clean_spool(SpoolForm(filament_id=0, location=shelf))['location']

        async def work(conn: AsyncConnection) -> None:
            await self._must_exist(conn, spool_id)
            await self._unload_spool(conn, spool_id)
            await conn.execute(sa.update(spool_t).where(spool_t.c.id == spool_id).values(location=location))

        await write_retrying(self.engine, work)
        self.live.events.spool_changed.emit(spool_id)

    async def load(self, actor: CurrentUser, printer_id: int, spool_id: int) -> SpoolRow:
        """Load a spool into a printer. The spool it replaces goes back to its shelf; a spool loaded elsewhere
        leaves that printer. Jobs that ended on this printer and were not settled yet are settled first, against
        the spool they ran on."""
        require_stock_keeper(actor)

        async def work(conn: AsyncConnection) -> int | None:
            printer = (
                await conn.execute(
                    sa.select(printer_t.c.loaded_spool_id).where(
                        printer_t.c.id == printer_id, printer_t.c.deleted_at.is_(None)
                    )
                )
            ).first()
            if printer is None:
                raise Refused('printer_not_found')
            spool = (await conn.execute(sa.select(spool_t.c.archived).where(spool_t.c.id == spool_id))).first()
            if spool is None:
                raise Refused('spool_not_found')
            if spool.archived:
                raise Refused('spool_archived')
            if printer.loaded_spool_id == spool_id:
                return None
            if printer.loaded_spool_id is not None:
                for job_id in await unsettled_jobs(conn, datetime.now(UTC) - LOAD_SETTLE, printer_id):
                    await settle_job(conn, job_id, datetime.now(UTC))
            await self._unload_spool(conn, spool_id)  # the unique index allows a spool in one printer only
            await conn.execute(
                sa.update(printer_t).where(printer_t.c.id == printer_id).values(loaded_spool_id=spool_id)
            )
            return printer.loaded_spool_id

        previous = await write_retrying(self.engine, work)
        for changed in (previous, spool_id):
            if changed is not None:
                self.live.events.spool_changed.emit(changed)
        self.live.events.printer_changed.emit(printer_id)
        row = await self.get(spool_id)
        assert row is not None
        return row

    async def load_by_code(self, actor: CurrentUser, printer_id: int, code: str) -> SpoolRow:
        """What a phone scanning a spool's label submits for a printer."""
        require_stock_keeper(actor)
        spool = await self.by_code(code)
        if spool is None:
            raise Refused('spool_not_found', 'code')
        return await self.load(actor, printer_id, spool.id)

    async def unload(self, actor: CurrentUser, printer_id: int) -> None:
        require_stock_keeper(actor)

        async def work(conn: AsyncConnection) -> int | None:
            spool_id = await conn.scalar(sa.select(printer_t.c.loaded_spool_id).where(printer_t.c.id == printer_id))
            await conn.execute(sa.update(printer_t).where(printer_t.c.id == printer_id).values(loaded_spool_id=None))
            return spool_id

        spool_id = await write_retrying(self.engine, work)
        if spool_id is not None:
            self.live.events.spool_changed.emit(spool_id)
        self.live.events.printer_changed.emit(printer_id)

    async def loaded(self, printer_id: int) -> SpoolRow | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(SPOOLS.where(printer_t.c.id == printer_id))).first()
        return None if row is None else spool_row(row)

    # ---- weigh-in -------------------------------------------------------------------------------------------

    async def weigh_in(self, actor: CurrentUser, spool_id: int, gross_g: float) -> WeighInResult:
        """The spool on a scale: its remaining grams become what the scale says, and the difference is a ledger
        row (who weighed it, no print job) so the stock's history adds up."""
        require_stock_keeper(actor)

        async def work(conn: AsyncConnection) -> tuple[float, bool]:
            q = sa.select(spool_t).where(spool_t.c.id == spool_id)
            spool = (await conn.execute(q.with_for_update() if conn.dialect.name == 'postgresql' else q)).first()
            if spool is None:
                raise Refused('spool_not_found')
            try:
                result = core.weigh_in(gross_g, spool.empty_spool_grams, spool.initial_grams)
            except core.SpoolError as e:
                raise Refused(e.code, 'gross_g', **e.info) from None
            corrected = round(spool.remaining_grams - result.remaining_g, 2)
            await conn.execute(
                sa.insert(usage_t).values(
                    print_job_id=None,
                    spool_id=spool_id,
                    member_id=actor.member_id,
                    grams=corrected,
                    reason=REASON_WEIGH_IN,
                    created_at=datetime.now(UTC),
                )
            )
            await conn.execute(
                sa.update(spool_t).where(spool_t.c.id == spool_id).values(remaining_grams=result.remaining_g)
            )
            return corrected, result.clamped

        corrected, clamped = await write_retrying(self.engine, work)
        self.live.events.spool_changed.emit(spool_id)
        row = await self.get(spool_id)
        assert row is not None
        return WeighInResult(spool=row, corrected_g=corrected, clamped=clamped)

    # ---- labels ---------------------------------------------------------------------------------------------

    def scan_url(self, code: str) -> str:
        return spool_labels.scan_url(self.base_url, code)

    async def label_svg(self, spool_id: int) -> str:
        spool = await self._label_spool(spool_id)
        return spool_labels.label_svg(spool, self.scan_url(spool.code))

    async def label_png(self, spool_id: int) -> bytes:
        spool = await self._label_spool(spool_id)
        return spool_labels.label_png(self.scan_url(spool.code))

    async def _label_spool(self, spool_id: int) -> SpoolRow:
        spool = await self.get(spool_id)
        if spool is None:
            raise Refused('spool_not_found')
        return spool

    # ---- helpers --------------------------------------------------------------------------------------------

    async def _must_exist(self, conn: AsyncConnection, spool_id: int) -> None:
        if await conn.scalar(sa.select(spool_t.c.id).where(spool_t.c.id == spool_id)) is None:
            raise Refused('spool_not_found')

    async def _unload_spool(self, conn: AsyncConnection, spool_id: int) -> None:
        await conn.execute(
            sa.update(printer_t).where(printer_t.c.loaded_spool_id == spool_id).values(loaded_spool_id=None)
        )

    async def _insert(self, table: sa.Table, values: dict[str, object]) -> int:
        async def work(conn: AsyncConnection) -> int:
            return int((await conn.execute(sa.insert(table).values(**values).returning(table.c.id))).scalar_one())

        return await self._unique(work)

    async def _update(self, table: sa.Table, row_id: int, values: dict[str, object]) -> None:
        async def work(conn: AsyncConnection) -> None:
            if not (await conn.execute(sa.update(table).where(table.c.id == row_id).values(**values))).rowcount:
                raise Refused('not_found')

        await self._unique(work)

    async def _delete(self, table: sa.Table, row_id: int) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(sa.delete(table).where(table.c.id == row_id))

        try:
            await write_retrying(self.engine, work)
        except IntegrityError:  # still referenced (a vendor's filaments, a filament's spools)
            raise Refused('in_use') from None

    async def _unique(self, work):  # noqa: ANN001, ANN202
        try:
            return await write_retrying(self.engine, work)
        except IntegrityError as e:
            if 'foreign' in str(e).lower():
                raise Refused('not_found') from None
            raise Refused('name_taken', 'name') from None
