"""Roles and machine types: unique names, one default role, in-use refusals with counts, reassignment, and never
locking every admin out (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.app import Panel
from fabpanel.db.models import Machine, Member
from fabpanel.services.auth import hash_password
from fabpanel.services.machines import Refused
from fabpanel.services.roles import RoleService, active_admins

from ..conftest import make_settings
from ..lab import create_lab
from .test_machines import ADMIN, MEMBER


@pytest.fixture
async def lab(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[RoleService, Panel]]:
    await create_lab(database_url)
    settings = make_settings(tmp_path, database_url)
    settings.web.default_admin_email = 'anna@example.org'  # no extra admin account: Anna is the only admin
    panel = Panel(settings)
    await panel.start(gateway=False)
    try:
        yield RoleService(panel.engine, panel.boards), panel
    finally:
        await panel.stop()


async def test_roles_listed_with_member_counts(lab) -> None:  # noqa: ANN001
    service, _panel = lab
    roles = {r.name: r for r in await service.roles()}
    assert set(roles) == {'Member', 'Maintainer', 'Staff'}
    assert (roles['Member'].members, roles['Member'].is_default) == (3, True)
    assert roles['Staff'].may_administer and roles['Staff'].members == 1


async def test_role_names_and_one_default(lab) -> None:  # noqa: ANN001
    service, _panel = lab
    with pytest.raises(Refused) as e:
        await service.save_role(ADMIN, None, ' member ')
    assert (e.value.code, e.value.field) == ('name_taken', 'name')
    with pytest.raises(Refused) as e:
        await service.save_role(ADMIN, None, '')
    assert e.value.code == 'name_required'
    with pytest.raises(Refused) as e:
        await service.save_role(MEMBER, None, 'Guest')
    assert e.value.code == 'forbidden'
    guest = await service.save_role(ADMIN, None, '<img src=x onerror=alert(1)>', is_default=True)
    roles = {r.id: r for r in await service.roles()}
    assert [r.id for r in roles.values() if r.is_default] == [guest]
    assert roles[guest].name == '<img src=x onerror=alert(1)>' and roles[guest].members == 0
    # the default cannot simply be switched off: another role takes it over
    with pytest.raises(Refused) as e:
        await service.save_role(ADMIN, guest, 'Guest')
    assert e.value.code == 'default_needed'
    await service.save_role(ADMIN, 1, 'Member', is_default=True)
    assert [r.id for r in await service.roles() if r.is_default] == [1]


async def test_the_last_admin_cannot_be_taken_away(lab) -> None:  # noqa: ANN001
    service, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 3).values(
            password_hash=hash_password('a long password')))
        assert await active_admins(conn) == 1
    with pytest.raises(Refused) as e:
        await service.save_role(ADMIN, 3, 'Staff', may_use_all_machines=True, may_administer=False)
    assert e.value.code == 'last_admin'
    assert {r.id: r for r in await service.roles()}[3].may_administer  # nothing changed
    # moving Anna's role's members to a role without admin rights is refused the same way
    with pytest.raises(Refused) as e:
        await service.delete_role(ADMIN, 3, reassign_to=2)
    assert e.value.code == 'last_admin'
    assert len(await service.roles()) == 3
    # with a second admin holding another role, the first role may lose the flag
    await service.save_role(ADMIN, 2, 'Maintainer', may_maintain=True, may_administer=True)
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == 2).values(
            password_hash=hash_password('another long password')))
        assert await active_admins(conn) == 2 and await active_admins(conn, except_member=2) == 1
    await service.save_role(ADMIN, 3, 'Staff', may_use_all_machines=True, may_administer=False)


async def test_deleting_a_role_in_use(lab) -> None:  # noqa: ANN001
    service, panel = lab
    with pytest.raises(Refused) as e:
        await service.delete_role(ADMIN, 2)
    assert e.value.code == 'role_in_use' and e.value.info == {'members': 1, 'deleted': 0}
    with pytest.raises(Refused) as e:
        await service.delete_role(ADMIN, 1)
    assert e.value.code == 'role_default'
    with pytest.raises(Refused) as e:
        await service.delete_role(ADMIN, 2, reassign_to=2)
    assert e.value.code == 'reassign_unknown'
    assert await service.delete_role(ADMIN, 2, reassign_to=1) == 1
    assert panel.boards.rules.members[2].role_id == 1  # Mario is a plain member for the boards at once
    unused = await service.save_role(ADMIN, None, 'Unused')
    assert await service.delete_role(ADMIN, unused) == 0
    assert {r.name for r in await service.roles()} == {'Member', 'Staff'}
    with pytest.raises(Refused):
        await service.delete_role(replace(ADMIN, may_administer=False), 3, reassign_to=1)


async def test_types_check_minutes_and_follow_on_boards(lab) -> None:  # noqa: ANN001
    service, panel = lab
    for logoff, grace, field in ((-1, 2, 'auto_logoff_minutes'), (65536, 2, 'auto_logoff_minutes'),
                                 ('abc', 2, 'auto_logoff_minutes'), (0, 256, 'grace_minutes'),
                                 (0, 1.5, 'grace_minutes')):
        with pytest.raises(Refused) as e:
            await service.save_type(ADMIN, None, 'Lathe', auto_logoff_minutes=logoff, grace_minutes=grace)
        assert (e.value.code, e.value.field) == ('bad_minutes', field)
    with pytest.raises(Refused) as e:
        await service.save_type(ADMIN, None, '3d PRINTER')
    assert e.value.code == 'name_taken'
    lathe = await service.save_type(ADMIN, None, 'Lathe', auto_logoff_minutes=65535, grace_minutes=255,
                                    authorization_required=False)
    types = {t.id: t for t in await service.types()}
    assert (types[lathe].auto_logoff_minutes, types[lathe].grace_minutes, types[lathe].machines) == (65535, 255, 0)
    await service.save_type(ADMIN, 1, '3D printer', auto_logoff_minutes=30, grace_minutes=1)
    rule = panel.boards.rules.machines[1]
    assert (rule.auto_logoff_minutes, rule.grace_minutes) == (30, 1)


async def test_deleting_a_type_in_use(lab) -> None:  # noqa: ANN001
    service, panel = lab
    async with panel.engine.begin() as conn:
        await conn.execute(sa.update(Machine.__table__).where(Machine.__table__.c.id == 4).values(
            deleted_at=sa.func.current_timestamp()))
    with pytest.raises(Refused) as e:
        await service.delete_type(ADMIN, 1)
    assert e.value.code == 'type_in_use' and e.value.info == {'machines': 1, 'deleted': 1}
    assert await service.delete_type(ADMIN, 1, reassign_to=3) == 2
    assert panel.live.machines[1].type_name == 'Hand tool'
    assert not panel.boards.rules.machines[1].authorization_required
    assert {t.name for t in await service.types()} == {'Laser cutter', 'Hand tool'}
    with pytest.raises(Refused) as e:
        await service.delete_type(MEMBER, 2)
    assert e.value.code == 'forbidden'
