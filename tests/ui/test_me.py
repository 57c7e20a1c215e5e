"""My lab (/me) in NiceGUI's simulated browser: a member sees their own machines, authorizations, uses, cards and
language, never another member's; the page follows admin changes and live machine state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.db.models import Authorization, Card, Machine, Member, Use
from fabpanel.ui.session import COOKIE

from ..conftest import make_settings
from ..lab import DRILL, GIULIA, LASER, MARIO, PRINTER, create_lab
from .simulation import signed_in, simulated_panel

HOSTILE = '<img src=x onerror=alert(1)><b>Bold</b>'
GIULIA_ID, MARIO_ID, ANNA_ID, ELSA_ID = 1, 2, 3, 5


@pytest.fixture
async def lab(tmp_path: Path):  # noqa: ANN201
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    async with simulated_panel(make_settings(tmp_path, url)) as (new_user, panel):
        yield new_user, panel


async def add_uses(panel, member_id: int, uid: str, machine_id: int, count: int, seconds: float = 600) -> None:  # noqa: ANN001
    now = datetime.now(UTC)
    rows = [{'machine_id': machine_id, 'member_id': member_id, 'card_uid': uid,
             'start': now - timedelta(minutes=20 * (i + 1)), 'last_seen': now,
             'end': now - timedelta(minutes=20 * (i + 1)) + timedelta(seconds=seconds), 'duration_s': seconds,
             'replay': False, 'unauthorized': False} for i in range(count)]
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Use.__table__), rows)


async def language_of(panel, member_id: int) -> str:  # noqa: ANN001
    async with panel.engine.connect() as conn:
        return (await conn.execute(sa.select(Member.__table__.c.language).where(
            Member.__table__.c.id == member_id))).scalar_one()


async def test_a_member_sees_what_each_machine_needs(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await signed_in(new_user, panel, GIULIA_ID)
    await user.open('/me')
    await user.should_see('Hello Giulia!', retries=50)
    with user.scope(marker=f'machine-{PRINTER}'):
        await user.should_see('You may use it: authorized.')
    with user.scope(marker=f'machine-{LASER}'):
        await user.should_see('ask a staff member for an introduction')
        await user.should_not_see('You may use it')
    with user.scope(marker=f'machine-{DRILL}'):
        await user.should_see('Free to use: no introduction needed.')
    with user.scope(marker='machine-4'):
        await user.should_see('Blocked by the staff')
        await user.should_see('Blocked')  # the live status badge
    with user.scope(marker='my-authorizations'):
        await user.should_see('Prusa MK4')
        await user.should_see('No expiry')
        await user.should_not_see('Laser')
    # the menu links to this page for every member
    await user.should_see('My lab')


async def test_an_expired_authorization_is_marked(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await signed_in(new_user, panel, ELSA_ID)
    await user.open('/me')
    with user.scope(marker='my-authorizations'):
        await user.should_see(marker='expired', retries=50)
        await user.should_see('Expired on')
    with user.scope(marker=f'machine-{PRINTER}'):
        await user.should_see('Your authorization expired on')


async def test_only_own_data_ever_appears(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Card.__table__).values(
            uid='99aa5555', member_id=MARIO_ID, label='Mario secret keyring', created_at=datetime.now(UTC)))
    await add_uses(panel, GIULIA_ID, GIULIA, PRINTER, 3)
    await add_uses(panel, MARIO_ID, MARIO, LASER, 4)
    user = await signed_in(new_user, panel, GIULIA_ID)
    # a member id in the URL changes nothing: the page shows the signed-in member
    await user.open('/me?member_id=2&member=2&id=2')
    await user.should_see('Hello Giulia!', retries=50)
    with user.scope(marker='my-cards'):
        await user.should_see('••••2c3d')
    with user.scope(marker='my-usage'):
        await user.should_see('This month: 30 min (uses: 3)')
        assert len(user.find(marker='use').elements) == 3
        await user.should_not_see('Laser')
    for other in ('Mario', 'Bianchi', 'mario@example.org', '3344', 'Mario secret keyring', '5555', 'Elsa',
                  'giulia@example.org', GIULIA):  # nor even her own full card id or e-mail
        await user.should_not_see(other)
    response = await user.http_client.get('/me/2', follow_redirects=False)
    assert response.status_code == 404


async def test_uses_are_paged(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    await add_uses(panel, GIULIA_ID, GIULIA, PRINTER, 30, seconds=60)
    user = await signed_in(new_user, panel, GIULIA_ID)
    await user.open('/me')
    await user.should_see('Page 1 of 2', retries=50)
    assert len(user.find(marker='use').elements) == 25
    user.find(marker='uses-next').click()
    await user.should_see('Page 2 of 2', retries=50)
    assert len(user.find(marker='use').elements) == 5
    user.find(marker='uses-prev').click()
    await user.should_see('Page 1 of 2', retries=50)


async def test_choosing_a_language_is_saved(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await signed_in(new_user, panel, GIULIA_ID)
    await user.open('/me')
    await user.should_see('Same as the browser', retries=50)
    user.find('Italiano').click()
    for _ in range(100):
        if await language_of(panel, GIULIA_ID) == 'it':
            break
        await asyncio.sleep(0.02)
    assert await language_of(panel, GIULIA_ID) == 'it'
    assert (await panel.auth.user(GIULIA_ID)).language == 'it'


async def test_actions_stop_when_the_session_ends(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    await add_uses(panel, GIULIA_ID, GIULIA, PRINTER, 30, seconds=60)
    user = await signed_in(new_user, panel, GIULIA_ID)
    await user.open('/me')
    await user.should_see('Page 1 of 2', retries=50)
    await panel.auth.close_session(user.http_client.cookies.get(COOKIE, domain='test.local'))  # signed out elsewhere
    user.find('Italiano').click()
    user.find(marker='uses-next').click()
    await user.should_see('Sign in', retries=50)
    assert await language_of(panel, GIULIA_ID) == ''


async def test_the_page_follows_admin_changes_and_live_state(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    user = await signed_in(new_user, panel, GIULIA_ID)
    await user.open('/me')
    with user.scope(marker=f'machine-{LASER}'):
        await user.should_see('ask a staff member for an introduction', retries=50)
        await user.should_not_see('Maintenance due')
    # an admin authorizes her on the laser: the board rules and her open page follow
    async with panel.engine.begin() as conn:
        await conn.execute(sa.insert(Authorization.__table__).values(
            member_id=GIULIA_ID, machine_id=LASER, expires_at=datetime.now(UTC) + timedelta(days=30),
            created_at=datetime.now(UTC)))
    await panel.boards.reload_rules()
    await user.should_see('authorized until', retries=50)
    with user.scope(marker=f'machine-{LASER}'):
        await user.should_not_see('ask a staff member for an introduction')
    # maintenance becomes due and someone starts the laser: bound to the live machine, no reload
    laser = panel.live.machines[LASER]
    laser.maintenance_text, laser.maintenance_due = 'Clean lens', True
    laser.user_first_name = 'Mario'
    with user.scope(marker=f'machine-{LASER}'):
        await user.should_see('Maintenance due: Clean lens', retries=50)
        await user.should_see('Mario', retries=50)


async def test_hostile_names_are_shown_as_text(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Machine.__table__).where(Machine.__table__.c.id == PRINTER).values(name=HOSTILE))
        await conn.execute(sa.update(Card.__table__).where(Card.__table__.c.uid == GIULIA).values(label=HOSTILE))
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == GIULIA_ID).values(
            first_name=HOSTILE))
    await add_uses(panel, GIULIA_ID, GIULIA, PRINTER, 1)
    await panel.boards.reload_rules()
    user = await signed_in(new_user, panel, GIULIA_ID)
    await user.open('/me')
    with user.scope(marker=f'machine-{PRINTER}'):
        await user.should_see(HOSTILE, retries=50)
    for marker in ('my-authorizations', 'my-usage', 'my-cards'):
        with user.scope(marker=marker):
            await user.should_see(HOSTILE)
    await user.should_see(f'Hello {HOSTILE}!')


async def test_signed_out_visitors_are_sent_to_sign_in(lab) -> None:  # noqa: ANN001
    new_user, _panel = lab
    response = await new_user().http_client.get('/me', follow_redirects=False)
    assert response.status_code == 303 and response.headers['location'] == '/login?next=%2Fme'
