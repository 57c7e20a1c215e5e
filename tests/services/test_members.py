"""Members, cards and new-card enrolment as services, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from fabpanel.app import Panel
from fabpanel.core.access import Verdict, decide_card
from fabpanel.core.members import MemberInput, Status
from fabpanel.db import board_store
from fabpanel.db.models import Card, LoginSession, Member, UnknownCard, Use
from fabpanel.services.auth import AuthError, CurrentUser, hash_password
from fabpanel.services.enrolment import EnrolmentService
from fabpanel.services.members import MemberError, MemberQuery, MemberService

from ..conftest import make_settings
from ..lab import GIULIA, MARIO, PRINTER, UNKNOWN, create_lab
from ..support import SmtpSink

HOSTILE = '<img src=x onerror=alert(1)>'


@pytest.fixture
async def panel(database_url: str, tmp_path: Path) -> AsyncIterator[Panel]:
    await create_lab(database_url)
    panel = Panel(make_settings(tmp_path, database_url))
    await panel.start(gateway=False)
    yield panel
    await panel.stop()


@pytest.fixture
def service(panel: Panel) -> MemberService:
    return MemberService(panel.engine, panel.boards, panel.auth)


async def user(panel: Panel, member_id: int) -> CurrentUser:
    u = await panel.auth.user(member_id)
    assert u is not None
    return u


def verdict(panel: Panel, uid: str, machine_id: int = PRINTER) -> Verdict:
    return decide_card(panel.boards.rules, uid, machine_id, datetime.now(UTC)).verdict


async def names(service: MemberService, actor: CurrentUser, **query: object) -> list[str]:
    page = await service.search(actor, MemberQuery(**query))
    return [m.first_name for m in page.rows]


async def test_search_filters_and_pages(panel: Panel, service: MemberService) -> None:
    anna = await user(panel, 3)
    assert await names(service, anna, text='giulia') == ['Giulia']
    assert await names(service, anna, text='ROSSI giu') == ['Giulia']
    assert await names(service, anna, text='mario@EXAMPLE') == ['Mario']
    assert await names(service, anna, text='0A:1B-2c') == ['Giulia']  # part of a card id, typed loosely
    assert await names(service, anna, text='%') == [] and await names(service, anna, text='_') == []
    assert await names(service, anna, role_id=2) == ['Mario']
    assert await names(service, anna, status=Status.DISABLED) == ['Dino']
    assert 'Dino' not in await names(service, anna, status=Status.ACTIVE)
    assert await names(service, anna, has_card=False) == ['Admin']  # the first admin made at start, no card
    assert set(await names(service, anna, has_card=True)) == {'Giulia', 'Mario', 'Anna', 'Dino', 'Elsa'}

    for i in range(30):
        await service.create(anna, MemberInput(first_name=f'Zed{i:02}', last_name='Zz', role_id=1))
    first = await service.search(anna, MemberQuery(text='zz'))
    assert (first.total, first.pages, len(first.rows), first.rows[0].first_name) == (30, 2, 25, 'Zed00')
    last = await service.search(anna, MemberQuery(text='zz', page=99))  # past the end: the last page
    assert (last.page, [m.first_name for m in last.rows]) == (2, [f'Zed{i}' for i in range(25, 30)])


async def test_only_active_admins_may_do_anything(panel: Panel, service: MemberService) -> None:
    giulia, anna = await user(panel, 1), await user(panel, 3)
    attempts = [service.search(giulia, MemberQuery()), service.get(giulia, 2),
                service.create(giulia, MemberInput(first_name='Eve', role_id=3)),
                service.update(giulia, 1, MemberInput(first_name='Giulia', role_id=3)),
                service.add_card(giulia, 1, 'cafe0001'), service.remove_card(giulia, 1),
                service.set_disabled(giulia, 2, True), service.delete(giulia, 2),
                service.export_xlsx(giulia, MemberQuery(), ['x'], {}), service.send_password_link(giulia, 2),
                EnrolmentService(panel.engine, panel.live, service).sightings(giulia)]
    for attempt in attempts:
        with pytest.raises(MemberError) as e:
            await attempt
        assert e.value.code == 'forbidden'
    # a page opened while Anna was an admin cannot act once her role is taken away
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 3).values(role_id=1))
    with pytest.raises(MemberError, match='forbidden'):
        await service.search(anna, MemberQuery())
    async with panel.engine.connect() as conn:
        assert (await conn.execute(sa.select(Member.__table__.c.role_id).where(
            Member.__table__.c.id == 1))).scalar() == 1


async def test_create_validates_and_binds_a_first_card(panel: Panel, service: MemberService) -> None:
    anna = await user(panel, 3)
    cases = [(MemberInput(first_name='  ', role_id=1), {'first_name': 'required'}),
             (MemberInput(first_name='A' * 81, role_id=1), {'first_name': 'too_long'}),
             (MemberInput(first_name='Eve', email='not an address', role_id=1), {'email': 'bad_email'}),
             (MemberInput(first_name='Eve', email=' GIULIA@Example.org', role_id=1), {'email': 'taken'}),
             (MemberInput(first_name='Eve', language='de', role_id=1), {'language': 'bad_language'}),
             (MemberInput(first_name='Eve', role_id=99), {'role_id': 'bad_role'})]
    for data, problems in cases:
        with pytest.raises(MemberError) as e:
            await service.create(anna, data)
        assert e.value.problems == problems
    with pytest.raises(MemberError) as e:
        await service.create(anna, MemberInput(first_name='Eve', role_id=1), card='not-a-card')
    assert e.value.problems == {'card': 'bad_card'}
    with pytest.raises(MemberError) as e:
        await service.create(anna, MemberInput(first_name='Eve', role_id=1), card=MARIO.upper())
    assert (e.value.code, e.value.owner) == ('card_in_use', 'Mario Bianchi')

    assert verdict(panel, 'c0ffee02', 3) is Verdict.UNKNOWN_CARD
    new_id = await service.create(anna, MemberInput(first_name=HOSTILE, last_name=' Bo  Nd ', email='Eve@Example.ORG',
                                                    language='it', role_id=1), card=' C0:FF:EE:02 ', card_label='fob')
    eve = await service.get(anna, new_id)
    assert (eve.first_name, eve.last_name, eve.email, eve.language, eve.status) == (
        HOSTILE, 'Bo Nd', 'eve@example.org', 'it', Status.ACTIVE)
    assert [(c.uid, c.label, c.board_ok) for c in eve.cards] == [('c0ffee02', 'fob', True)]
    assert verdict(panel, 'c0ffee02', 3) is Verdict.ALLOWED  # the board rules were reloaded


async def test_cards_several_in_use_short_and_revoked(panel: Panel, service: MemberService) -> None:
    anna = await user(panel, 3)
    now = datetime.now(UTC)
    async with panel.engine.begin() as conn:
        await board_store.record_unknown_card(conn, UNKNOWN, PRINTER, now)
        await board_store.record_unknown_card(conn, UNKNOWN, 2, now)
    second = await service.add_card(anna, 1, UNKNOWN.upper(), 'spare')
    assert verdict(panel, UNKNOWN) is Verdict.ALLOWED and verdict(panel, GIULIA) is Verdict.ALLOWED
    async with panel.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(UnknownCard))).scalar() == 0

    for text, code, problems in [(MARIO, 'card_in_use', {'card': 'card_in_use'}),
                                 (GIULIA, 'card_theirs', {'card': 'card_theirs'}),
                                 ('zz', 'invalid', {'card': 'bad_card'}), ('', 'invalid', {'card': 'bad_card'}),
                                 ('a' * 33, 'invalid', {'card': 'bad_card'})]:
        with pytest.raises(MemberError) as e:
            await service.add_card(anna, 1, text)
        assert (e.value.code, e.value.problems) == (code, problems)
    with pytest.raises(MemberError) as e:
        await service.add_card(anna, 1, 'beef0001', 'x' * 81)
    assert e.value.problems == {'card_label': 'too_long'}

    short = await service.add_card(anna, 1, 'ABC')  # kept as typed (lower case), never padded
    assert (short.uid, short.board_ok) == ('abc', False)
    assert [c.uid for c in (await service.get(anna, 1)).cards] == [GIULIA, UNKNOWN, 'abc']

    await service.remove_card(anna, second.id)  # lost: it stops working at once
    assert verdict(panel, UNKNOWN) is Verdict.UNKNOWN_CARD and verdict(panel, GIULIA) is Verdict.ALLOWED
    with pytest.raises(MemberError, match='not_found'):
        await service.remove_card(anna, second.id)


async def test_disable_and_self_lockout(panel: Panel, service: MemberService) -> None:
    anna = await user(panel, 3)
    await service.set_disabled(anna, 1, True)
    assert verdict(panel, GIULIA) is Verdict.DISABLED and await panel.auth.user(1) is None
    await service.set_disabled(anna, 1, False)
    assert verdict(panel, GIULIA) is Verdict.ALLOWED
    for attempt in (service.set_disabled(anna, 3, True), service.delete(anna, 3)):
        with pytest.raises(MemberError, match='self_lockout'):
            await attempt
    with pytest.raises(MemberError) as e:
        await service.update(anna, 3, MemberInput(first_name='Anna', role_id=1))
    assert e.value.problems == {'role_id': 'self_lockout'}
    await service.update(anna, 3, MemberInput(first_name='Anna', last_name='V.', email='anna@example.org', role_id=3))
    await service.update(anna, 2, MemberInput(first_name='Mario', email='MARIO@example.org', role_id=1))
    mario = await service.get(anna, 2)
    assert (mario.role_name, mario.email) == ('Member', 'mario@example.org')


async def test_delete_is_soft_frees_the_address_and_keeps_history(panel: Panel, service: MemberService) -> None:
    anna = await user(panel, 3)
    start = datetime.now(UTC) - timedelta(hours=1)
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 1).values(
            password_hash=hash_password('correct horse battery')))
        await conn.execute(sa.insert(Use.__table__).values(
            machine_id=PRINTER, member_id=1, card_uid=GIULIA, start=start, last_seen=start,
            end=start + timedelta(seconds=60), duration_s=60.0))
    await panel.auth.open_session(1)
    await service.delete(anna, 1)

    gone = await service.get(anna, 1)
    assert (gone.first_name, gone.email, gone.cards, gone.status) == ('Giulia', '', (), Status.DELETED)
    assert verdict(panel, GIULIA) is Verdict.UNKNOWN_CARD
    with pytest.raises(AuthError):
        await panel.auth.sign_in('giulia@example.org', 'correct horse battery')
    async with panel.engine.connect() as conn:
        use = (await conn.execute(sa.select(Use.__table__))).one()
        assert (use.member_id, use.card_uid) == (1, GIULIA)
        assert (await conn.execute(sa.select(sa.func.count()).select_from(LoginSession).where(
            LoginSession.__table__.c.member_id == 1))).scalar() == 0
    assert 'Giulia' not in await names(service, anna)
    assert await names(service, anna, status=Status.DELETED) == ['Giulia']
    for attempt in (service.update(anna, 1, MemberInput(first_name='G', role_id=1)), service.add_card(anna, 1, 'ab'),
                    service.delete(anna, 1), service.set_disabled(anna, 1, False)):
        with pytest.raises(MemberError, match='deleted'):
            await attempt
    # her address and her card can go to someone else
    new_id = await service.create(anna, MemberInput(first_name='Giulia', last_name='Nuova', email='giulia@example.org',
                                                    role_id=1), card=GIULIA)
    assert new_id != 1 and verdict(panel, GIULIA) is Verdict.NOT_AUTHORIZED


async def test_export_has_what_the_screen_filters_and_no_secrets(panel: Panel, service: MemberService) -> None:
    anna = await user(panel, 3)
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 2).values(
            password_hash=hash_password('correct horse battery'), first_name='=HYPERLINK("http://x","y")'))
    token = await panel.auth.open_session(2)
    await service.add_card(anna, 2, 'abc', 'old card')
    headers = ['Id', 'First name', 'Last name', 'E-mail', 'Language', 'Role', 'Status', 'Cards', 'Created']
    data = await service.export_xlsx(anna, MemberQuery(role_id=2), headers, {'active': 'Active'})
    rows = list(load_workbook(BytesIO(data)).active.iter_rows(values_only=True))
    assert rows[0] == tuple(headers) and len(rows) == 2
    assert rows[1][:8] == (2, '\'=HYPERLINK("http://x","y")', 'Bianchi', 'mario@example.org', None, 'Maintainer',
                           'Active', f'{MARIO}, abc (old card)')
    text = repr(rows)
    assert 'argon2' not in text and token not in text
    everyone = list(load_workbook(BytesIO(await service.export_xlsx(anna, MemberQuery(), headers, {}))).active.rows)
    assert len(everyone) == 1 + 6  # the whole filtered list, not one page


async def test_password_link_goes_to_the_member(database_url: str, tmp_path: Path, smtp: SmtpSink) -> None:
    await create_lab(database_url)
    panel = Panel(make_settings(tmp_path, database_url, smtp_port=smtp.port))
    await panel.start(gateway=False)
    try:
        service = MemberService(panel.engine, panel.boards, panel.auth)
        anna = await user(panel, 3)
        await service.send_password_link(anna, 1)
        await panel.auth.settle()
        assert [m['To'] for m in smtp.messages] == ['giulia@example.org']
        with pytest.raises(MemberError, match='disabled'):
            await service.send_password_link(anna, 4)
        await service.update(anna, 5, MemberInput(first_name='Elsa', email='', role_id=1))
        with pytest.raises(MemberError, match='no_email'):
            await service.send_password_link(anna, 5)
        assert len(smtp.messages) == 1
    finally:
        await panel.stop()


# ---- enrolment -----------------------------------------------------------------------------------------------------
async def test_sightings_newest_first_give_and_forget(panel: Panel, service: MemberService) -> None:
    anna = await user(panel, 3)
    enrol = EnrolmentService(panel.engine, panel.live, service)
    t = datetime.now(UTC) - timedelta(hours=1)
    async with panel.engine.begin() as conn:
        await board_store.record_unknown_card(conn, 'aaaa0001', PRINTER, t)
        await board_store.record_unknown_card(conn, 'aaaa0002', 2, t + timedelta(minutes=5))
        await board_store.record_unknown_card(conn, 'aaaa0001', PRINTER, t + timedelta(minutes=10))
        await board_store.record_unknown_card(conn, 'aaaa0003', 3, t + timedelta(minutes=1))
    page = await enrol.sightings(anna)
    assert [(s.uid, s.machine_name, s.attempts) for s in page.rows] == [
        ('aaaa0001', 'Prusa MK4', 2), ('aaaa0002', 'Laser', 1), ('aaaa0003', 'Drill press', 1)]
    assert page.rows[0].first_seen == t and page.rows[0].last_seen == t + timedelta(minutes=10)

    await enrol.give(anna, 'aaaa0001', 2)
    await enrol.forget(anna, 'AAAA0003')
    assert [s.uid for s in (await enrol.sightings(anna)).rows] == ['aaaa0002']
    assert verdict(panel, 'aaaa0001', 2) is Verdict.ALLOWED  # Mario is authorized on the laser


async def test_waiting_for_a_card_binds_the_next_one_on_that_machine(panel: Panel, service: MemberService) -> None:
    anna = await user(panel, 3)
    enrol = EnrolmentService(panel.engine, panel.live, service)
    events = panel.live.events.card_unknown

    async def swipe() -> None:
        await asyncio.sleep(0.05)
        events.emit((2, 'bbbb0001'))  # another machine: not this one
        events.emit((PRINTER, 'bbbb0002'))

    task = asyncio.create_task(swipe())
    assert await enrol.bind_next(anna, PRINTER, 1, timeout=5) == 'bbbb0002'
    await task
    assert not events._subscribers  # noqa: SLF001 - nothing stays subscribed
    assert verdict(panel, 'bbbb0002') is Verdict.ALLOWED and verdict(panel, 'bbbb0001', 2) is Verdict.UNKNOWN_CARD

    assert await enrol.bind_next(anna, PRINTER, 1, timeout=0.05) is None  # nobody swiped
    assert not events._subscribers  # noqa: SLF001
    wait = await enrol.start_wait(anna, PRINTER, None)
    waiting = asyncio.create_task(wait.next(5))
    await asyncio.sleep(0.01)
    waiting.cancel()  # the admin left the page
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not events._subscribers and not wait.waiting  # noqa: SLF001
    wait = await enrol.start_wait(anna, PRINTER, None)
    waiting = asyncio.create_task(wait.next(5))
    await asyncio.sleep(0.01)
    wait.close()  # the admin pressed 'cancel'
    assert await waiting is None and not events._subscribers  # noqa: SLF001
    events.emit((PRINTER, 'bbbb0003'))  # after the wait: nobody takes it
    for machine, member, code in [(99, 1, 'no_machine'), (PRINTER, 99, 'not_found')]:
        with pytest.raises(MemberError, match=code):
            await enrol.start_wait(anna, machine, member)
    with pytest.raises(MemberError, match='forbidden'):
        await enrol.start_wait(await user(panel, 1), PRINTER, None)
    assert not events._subscribers  # noqa: SLF001
    async with panel.engine.connect() as conn:
        assert (await conn.execute(sa.select(Card.__table__.c.member_id).where(
            Card.__table__.c.uid == 'bbbb0002'))).scalar() == 1
