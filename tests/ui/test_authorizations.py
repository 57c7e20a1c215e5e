"""Authorizations in NiceGUI's simulated browser: admins only, bulk grants, expiry days with expired ones marked,
revocation, the per-member view, and the spreadsheet of what is on screen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from fabpanel.core.access import Verdict, decide_card
from fabpanel.db.models import Authorization, Member

from ..conftest import make_settings
from ..lab import DISABLED, EXPIRED, GIULIA, LASER, PRINTER, create_lab
from .simulation import signed_in, simulated_panel
from .test_machines import ADMIN, HOSTILE, MAINTAINER, MEMBER, eventually, set_value


@pytest.fixture
async def lab(tmp_path: Path):
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        yield new_user, panel


async def authorizations(panel) -> dict[tuple[int, int], datetime | None]:  # noqa: ANN001
    t = Authorization.__table__
    async with panel.engine.connect() as conn:
        return {(r.member_id, r.machine_id): r.expires_at for r in await conn.execute(sa.select(t))}


async def test_only_admins_and_no_other_members_data(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    for member_id in (MEMBER, MAINTAINER):
        user = await signed_in(new_user, panel, member_id)
        for path in ('/authorizations', '/authorizations?member=2', '/authorizations?machine=1'):
            response = await user.http_client.get(path, follow_redirects=False)
            assert response.headers['location'] == '/forbidden', path
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/authorizations?machine=1')
    await admin.should_see('Giulia Rossi')
    await admin.should_see('Expired: was valid until')  # Elsa's
    await admin.should_see('member disabled')  # Dino
    await admin.open('/authorizations?member=999')
    await admin.should_see('There is no such member.')


async def test_bulk_grant_with_expiry_and_the_board_follows(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/authorizations')  # the first machine by name: Blocked CNC, nobody authorized
    await admin.should_see('No authorizations match.')
    set_value(admin, 'machine', LASER)  # choosing another machine opens its list
    await admin.should_see('Mario Bianchi', retries=50)
    await admin.should_not_see('Giulia Rossi')
    admin.find(marker='grant').click()
    await admin.should_see('Choose at least one member.', retries=50)
    set_value(admin, 'add-members', [1, 5])
    admin.find(marker='add-expiry').type('2001-01-01')
    admin.find(marker='grant').click()
    await admin.should_see('This day is over: choose today or a later day.', retries=50)
    admin.find(marker='add-expiry').clear().type('31/12/2030')
    admin.find(marker='grant').click()
    await admin.should_see('Enter a date as YYYY-MM-DD.', retries=50)
    admin.find(marker='add-expiry').clear().type('2030-12-31')
    admin.find(marker='grant').click()
    await admin.should_see('Authorized: 2 new, 0 renewed.', retries=50)
    await admin.should_see('Giulia Rossi', retries=20)
    await admin.should_see('Valid until 31/12/2030')
    auths = await authorizations(panel)
    assert (1, LASER) in auths and (5, LASER) in auths and auths[(1, LASER)] is not None
    assert decide_card(panel.boards.rules, GIULIA, LASER, datetime.now(UTC)).verdict is Verdict.ALLOWED


async def test_expired_ones_are_marked_and_can_be_renewed_or_revoked(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open(f'/authorizations?machine={PRINTER}')
    set_value(admin, 'status', 'expired')
    await admin.should_not_see('Giulia Rossi', retries=50)
    await admin.should_see('Elsa Gialli')
    with admin:
        assert admin.find(marker=f'auth-5-{PRINTER}').elements.pop().props['data-expired'] == 'true'
    # clear the expiry: Elsa may use the printer again
    admin.find(marker=f'expiry-5-{PRINTER}').click()
    await admin.should_see(marker='clear-expiry', retries=50)
    admin.find(marker='clear-expiry').click()
    await admin.should_see('Expiry saved.', retries=50)
    await eventually(lambda: decide_card(panel.boards.rules, EXPIRED, PRINTER, datetime.now(UTC)).verdict
                     is Verdict.ALLOWED)
    await admin.should_not_see('Elsa Gialli', retries=50)  # not expired any more: filtered out
    set_value(admin, 'status', 'all')
    await admin.should_see('No expiry', retries=50)
    # set a day for Giulia: a past day is refused next to the field
    admin.find(marker=f'expiry-1-{PRINTER}').click()
    await admin.should_see(marker='save-expiry', retries=50)
    admin.find(marker='expiry-date').clear().type('2000-02-02')
    admin.find(marker='save-expiry').click()
    await admin.should_see('This day is over', retries=50)
    tomorrow = (datetime.now() + timedelta(days=1)).date()
    admin.find(marker='expiry-date').clear().type(tomorrow.isoformat())
    admin.find(marker='save-expiry').click()
    await admin.should_see(f'Valid until {tomorrow.strftime("%d/%m/%Y")}', retries=50)
    # revoke Dino's, after a confirmation that says what happens
    admin.find(marker=f'revoke-4-{PRINTER}').click()
    await admin.should_see('Dino Neri may no longer use Prusa MK4', retries=50)
    admin.find(marker='confirm').click()
    await admin.should_see('Authorization revoked.', retries=50)
    assert (4, PRINTER) not in await authorizations(panel)
    assert decide_card(panel.boards.rules, DISABLED, PRINTER, datetime.now(UTC)).verdict is Verdict.DISABLED


async def test_per_member_view_grants_machines(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 1).values(first_name=HOSTILE))
    await panel.boards.reload_rules()
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/authorizations?member=1')
    await admin.should_see(f'Machines {HOSTILE} Rossi may use')  # a label: text, never HTML
    await admin.should_see('Prusa MK4')
    await admin.should_not_see('Laser')
    set_value(admin, 'add-machines', [LASER, 4])
    admin.find(marker='grant').click()
    await admin.should_see('Authorized: 2 new, 0 renewed.', retries=50)
    await admin.should_see('Laser', retries=20)
    await admin.should_see('Blocked CNC')
    assert {k for k in await authorizations(panel) if k[0] == 1} == {(1, PRINTER), (1, LASER), (1, 4)}
    admin.find(marker='search').clear().type('las')
    await admin.should_not_see('Prusa MK4', retries=50)
    await admin.should_see('Laser')


async def test_spreadsheet_has_what_the_screen_shows(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 2).values(
            first_name='=HYPERLINK("http://evil.example")'))
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open(f'/authorizations?machine={PRINTER}')
    set_value(admin, 'status', 'active')
    await admin.should_not_see('Elsa Gialli', retries=50)
    admin.find(marker='export').click()
    response = await admin.download.next(timeout=5)
    sheet = load_workbook(BytesIO(response.content)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0] == ['Member', 'Machine', 'Status', 'Valid until', 'Authorized on']
    names = [row[0] for row in values[1:]]
    assert names == ['\'=HYPERLINK("http://evil.example") Bianchi', 'Dino Neri', 'Giulia Rossi']  # never a formula
    assert all(row[1] == 'Prusa MK4' and row[2] == 'Valid' for row in values[1:])
