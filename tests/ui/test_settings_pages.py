"""Roles and machine types in NiceGUI's simulated browser: admins only, forms that refuse bad values, deletes that
move members or machines first, and the last admin kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from fabpanel.db.models import Machine, MachineType, Member, Role
from fabpanel.services.auth import hash_password

from ..conftest import make_settings
from ..lab import create_lab
from .simulation import signed_in, simulated_panel
from .test_machines import ADMIN, HOSTILE, MAINTAINER, MEMBER, eventually, set_value


@pytest.fixture
async def lab(tmp_path: Path):
    url = f'sqlite:///{tmp_path}/fabpanel.db'
    await create_lab(url)
    settings = make_settings(tmp_path, url)
    settings.web.default_admin_email = 'anna@example.org'  # Anna is the lab's only admin
    async with simulated_panel(settings) as (new_user, panel):
        async with panel.engine.begin() as conn:
            await conn.execute(sa.update(Member.__table__).where(Member.__table__.c.id == ADMIN).values(
                password_hash=hash_password('a long password'), must_change_password=False))
        yield new_user, panel


async def rows(panel, model) -> dict[str, sa.Row]:  # noqa: ANN001
    async with panel.engine.connect() as conn:
        return {r.name: r for r in await conn.execute(sa.select(model.__table__))}


async def test_only_admins(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    for member_id in (MEMBER, MAINTAINER):
        user = await signed_in(new_user, panel, member_id)
        response = await user.http_client.get('/settings', follow_redirects=False)
        assert response.headers['location'] == '/forbidden'
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/settings')
    await admin.should_see('Maintainer')
    await admin.should_see('Laser cutter')
    await admin.should_see('default for new members')
    await admin.should_see('logoff after 480 min · grace 2 min · authorization needed')


async def test_add_a_role_with_a_hostile_name_and_one_default(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/settings')
    admin.find(marker='add-role').click()
    await admin.should_see(marker='save-role', retries=50)
    admin.find(marker='role-name').clear().type('member')
    admin.find(marker='save-role').click()
    await admin.should_see('This name is already used.', retries=50)
    admin.find(marker='role-name').clear().type(HOSTILE)
    admin.find(marker='role-default').click()
    admin.find(marker='role-maintain').click()
    admin.find(marker='save-role').click()
    await admin.should_see('Role saved.', retries=50)
    await admin.should_see(HOSTILE)
    roles = await rows(panel, Role)
    assert roles[HOSTILE].is_default and roles[HOSTILE].may_maintain and not roles['Member'].is_default
    # the default cannot be switched off; another role takes it over
    admin.find(marker=f'edit-role-{roles[HOSTILE].id}').click()
    await admin.should_see(marker='save-role', retries=50)
    admin.find(marker='role-default').click()
    admin.find(marker='save-role').click()
    await admin.should_see('New members get the default role, so there is always one', retries=50)


async def test_the_last_admin_keeps_the_admin_role(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/settings')
    admin.find(marker='edit-role-3').click()
    await admin.should_see(marker='save-role', retries=50)
    admin.find(marker='role-administer').click()  # off
    admin.find(marker='save-role').click()
    await admin.should_see('Nobody could administer the panel any more', retries=50)
    assert (await rows(panel, Role))['Staff'].may_administer


async def test_deleting_a_role_in_use_moves_its_members(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/settings')
    admin.find(marker='delete-role-2').click()
    await admin.should_see('Members with this role: 1 (and 0 deleted).', retries=50)
    admin.find(marker='reassign-delete').click()
    await admin.should_see('Choose where to move them.', retries=50)
    set_value(admin, 'reassign-to', 1)
    admin.find(marker='reassign-delete').click()
    await admin.should_see('Role deleted.', retries=50)
    assert 'Maintainer' not in await rows(panel, Role)
    assert panel.boards.rules.members[2].role_id == 1  # the boards follow
    # the default role is never deleted
    admin.find(marker='delete-role-1').click()
    await admin.should_see(marker='reassign-to', retries=50)
    set_value(admin, 'reassign-to', 3)
    admin.find(marker='reassign-delete').click()
    await admin.should_see('make another role the default before deleting this one', retries=50)
    assert 'Member' in await rows(panel, Role)


async def test_machine_types_refuse_bad_minutes(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/settings')
    admin.find(marker='add-type').click()
    await admin.should_see(marker='save-type', retries=50)
    admin.find(marker='type-name').clear().type('Lathe')
    admin.find(marker='type-logoff').clear().type('70000')
    admin.find(marker='save-type').click()
    await admin.should_see('A whole number of minutes from 0 to 65535.', retries=50)
    admin.find(marker='type-logoff').clear().type('30')
    admin.find(marker='type-grace').clear().type('-1')
    admin.find(marker='save-type').click()
    await admin.should_see('A whole number of minutes from 0 to 255.', retries=50)
    admin.find(marker='type-grace').clear().type('5')
    admin.find(marker='type-authorization').click()  # off
    admin.find(marker='save-type').click()
    await admin.should_see('Machine type saved.', retries=50)
    await admin.should_see('logoff after 30 min · grace 5 min · no authorization needed')
    lathe = (await rows(panel, MachineType))['Lathe']
    assert (lathe.auto_logoff_minutes, lathe.grace_minutes, lathe.authorization_required) == (30, 5, False)


async def test_deleting_a_type_in_use_moves_its_machines(lab) -> None:  # noqa: ANN001
    new_user, panel = lab
    admin = await signed_in(new_user, panel, ADMIN)
    await admin.open('/settings')
    admin.find(marker='delete-type-2').click()
    await admin.should_see('Machines of this type: 1 (and 0 deleted).', retries=50)
    admin.find(marker='cancel').click()
    await asyncio.sleep(0.1)
    assert 'Laser cutter' in await rows(panel, MachineType)
    admin.find(marker='delete-type-2').click()
    await admin.should_see(marker='reassign-to', retries=50)
    set_value(admin, 'reassign-to', 3)
    admin.find(marker='reassign-delete').click()
    await admin.should_see('Machine type deleted.', retries=50)
    await eventually(lambda: panel.live.machines[2].type_name == 'Hand tool')
    assert (await rows(panel, Machine))['Laser'].type_id == 3
    # an unused type just asks
    admin.find(marker='add-type').click()
    await admin.should_see(marker='save-type', retries=50)
    admin.find(marker='type-name').clear().type('Spare')
    admin.find(marker='save-type').click()
    await admin.should_see('Machine type saved.', retries=50)
    spare = (await rows(panel, MachineType))['Spare'].id
    admin.find(marker=f'delete-type-{spare}').click()
    await admin.should_see('No machine has this type. It is deleted for good.', retries=50)
    admin.find(marker='confirm').click()

    async def spare_gone() -> bool:
        return 'Spare' not in await rows(panel, MachineType)

    await eventually(spare_gone)
    await admin.should_not_see(marker=f'delete-type-{spare}', retries=50)
