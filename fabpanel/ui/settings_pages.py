"""Roles and machine types (admins): add, edit, delete; a role or type in use is deleted only after its members or
machines are moved elsewhere, and no change may leave the panel without an admin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi.responses import RedirectResponse
from nicegui import ui
from starlette.requests import Request

from fabpanel.i18n import Translator
from fabpanel.services.machines import Refused
from fabpanel.services.roles import GRACE_MAX, LOGOFF_MAX, RoleRow, RoleService, TypeRow

from .components import confirm, empty
from .layout import frame, nav_registered, page_language
from .machines import Actor, admin_actor, error_label, refusal_text
from .session import administers, page_user

if TYPE_CHECKING:
    from fabpanel.app import Panel

SECTION = 'text-lg font-semibold text-slate-700'
Refresh = Callable[[], Awaitable[None]]


def _flags(_: Translator, r: RoleRow) -> list[str]:
    return [text for on, text in ((r.is_default, _('default for new members')),
                                  (r.may_use_all_machines, _('every machine')), (r.may_maintain, _('maintenance')),
                                  (r.may_administer, _('administers')), (r.may_approve_prints, _('approves prints')))
            if on]


async def role_dialog(_: Translator, roles: RoleService, actor: Actor, role: RoleRow | None) -> bool:
    with ui.dialog() as dialog, ui.card().classes('w-full max-w-md'):
        ui.label(_('Edit the role') if role else _('Add a role')).classes('text-lg font-semibold')
        name = ui.input(_('Name'), value=role.name if role else '').props('maxlength=80').classes('w-full').mark(
            'role-name')
        name_error = error_label()
        boxes = {
            'may_use_all_machines': ui.checkbox(_('May use every machine without authorizations')).mark(
                'role-all-machines'),
            'may_maintain': ui.checkbox(_('May do maintenance (boards offer the maintenance prompt)')).mark(
                'role-maintain'),
            'may_administer': ui.checkbox(_('May administer the panel')).mark('role-administer'),
            'may_approve_prints': ui.checkbox(_('May approve print jobs')).mark('role-approve-prints'),
            'is_default': ui.checkbox(_('Default role for new members')).mark('role-default'),
        }
        for flag, box in boxes.items():
            box.value = bool(getattr(role, flag)) if role else False
        flag_error = error_label()

        async def save() -> None:
            if (user := await actor()) is None:
                return
            name_error.text = flag_error.text = ''
            try:
                await roles.save_role(user, role.id if role else None, name.value or '',
                                      **{flag: bool(box.value) for flag, box in boxes.items()})
            except Refused as e:
                (name_error if e.field == 'name' else flag_error).text = refusal_text(_, e)
                return
            dialog.submit(True)

        with ui.row().classes('w-full justify-end gap-2'):
            ui.button(_('Cancel'), on_click=lambda: dialog.submit(False)).props('flat').mark('cancel')
            ui.button(_('Save'), on_click=save).mark('save-role')
    result = await dialog
    dialog.delete()
    return bool(result)


async def type_dialog(_: Translator, roles: RoleService, actor: Actor, kind: TypeRow | None) -> bool:
    with ui.dialog() as dialog, ui.card().classes('w-full max-w-md'):
        ui.label(_('Edit the machine type') if kind else _('Add a machine type')).classes('text-lg font-semibold')
        name = ui.input(_('Name'), value=kind.name if kind else '').props('maxlength=80').classes('w-full').mark(
            'type-name')
        name_error = error_label()
        logoff = ui.input(_('Automatic logoff after minutes (0 = never, up to {max})').format(max=LOGOFF_MAX),
                          value=str(kind.auto_logoff_minutes if kind else 0)).props('inputmode=numeric').classes(
            'w-full').mark('type-logoff')
        logoff_error = error_label()
        grace = ui.input(_('Grace minutes before the power goes off (0 to {max})').format(max=GRACE_MAX),
                         value=str(kind.grace_minutes if kind else 2)).props('inputmode=numeric').classes(
            'w-full').mark('type-grace')
        grace_error = error_label()
        required = ui.checkbox(_('Members need an authorization'),
                               value=kind.authorization_required if kind else True).mark('type-authorization')

        async def save() -> None:
            if (user := await actor()) is None:
                return
            name_error.text = logoff_error.text = grace_error.text = ''
            try:
                await roles.save_type(user, kind.id if kind else None, name.value or '',
                                      auto_logoff_minutes=logoff.value, grace_minutes=grace.value,
                                      authorization_required=bool(required.value))
            except Refused as e:
                target = {'auto_logoff_minutes': logoff_error, 'grace_minutes': grace_error}.get(e.field, name_error)
                target.text = refusal_text(_, e)
                return
            dialog.submit(True)

        with ui.row().classes('w-full justify-end gap-2'):
            ui.button(_('Cancel'), on_click=lambda: dialog.submit(False)).props('flat').mark('cancel')
            ui.button(_('Save'), on_click=save).mark('save-type')
    result = await dialog
    dialog.delete()
    return bool(result)


async def reassign_dialog(_: Translator, title: str, message: str, choices: dict[int, str]) -> int | None:
    """Where the members (or machines) of what is deleted go; None when cancelled."""
    with ui.dialog() as dialog, ui.card().classes('w-full max-w-md'):
        ui.label(title).classes('text-lg font-semibold')
        ui.label(message).classes('whitespace-pre-line')
        target = ui.select(choices, label=_('Move them to')).classes('w-full').mark('reassign-to')
        error = error_label()

        def submit() -> None:
            if target.value is None:
                error.text = _('Choose where to move them.')
                return
            dialog.submit(target.value)

        with ui.row().classes('w-full justify-end gap-2'):
            ui.button(_('Cancel'), on_click=lambda: dialog.submit(None)).props('flat').mark('cancel')
            ui.button(_('Move and delete'), on_click=submit).props('color=negative').mark('reassign-delete')
    result = await dialog
    dialog.delete()
    return result


async def delete_role(_: Translator, roles: RoleService, actor: Actor, role: RoleRow) -> bool:
    if await actor() is None:
        return False
    others = {r.id: r.name for r in await roles.roles() if r.id != role.id}
    reassign = None
    if role.members or role.deleted_members:
        reassign = await reassign_dialog(
            _, _('Delete the role {name}?').format(name=role.name),
            _('Members with this role: {members} (and {deleted} deleted). They get the role you choose; then the '
              'role is deleted.').format(members=role.members, deleted=role.deleted_members), others)
        if reassign is None:
            return False
    elif not await confirm(_, _('Delete the role {name}?').format(name=role.name),
                           _('Nobody has this role. It is deleted for good.'), _('Delete')):
        return False
    if (user := await actor()) is None:
        return False
    try:
        await roles.delete_role(user, role.id, reassign)
    except Refused as e:
        ui.notify(refusal_text(_, e), type='negative', multi_line=True)
        return False
    ui.notify(_('Role deleted.'), type='positive')
    return True


async def delete_type(_: Translator, roles: RoleService, actor: Actor, kind: TypeRow) -> bool:
    if await actor() is None:
        return False
    others = {t.id: t.name for t in await roles.types() if t.id != kind.id}
    reassign = None
    if kind.machines or kind.deleted_machines:
        reassign = await reassign_dialog(
            _, _('Delete the machine type {name}?').format(name=kind.name),
            _('Machines of this type: {machines} (and {deleted} deleted). They get the type you choose (its logoff, '
              'grace and authorization rules); then the type is deleted.').format(
                machines=kind.machines, deleted=kind.deleted_machines), others)
        if reassign is None:
            return False
    elif not await confirm(_, _('Delete the machine type {name}?').format(name=kind.name),
                           _('No machine has this type. It is deleted for good.'), _('Delete')):
        return False
    if (user := await actor()) is None:
        return False
    try:
        await roles.delete_type(user, kind.id, reassign)
    except Refused as e:
        ui.notify(refusal_text(_, e), type='negative', multi_line=True)
        return False
    ui.notify(_('Machine type deleted.'), type='positive')
    return True


def _row_buttons(edit: Callable[[], Awaitable[None]], delete: Callable[[], Awaitable[None]], key: str) -> None:
    with ui.row().classes('gap-1 shrink-0'):
        ui.button(icon='edit', on_click=edit).props('flat round dense aria-label=Edit').mark(f'edit-{key}')
        ui.button(icon='delete', on_click=delete).props('flat round dense color=negative aria-label=Delete').mark(
            f'delete-{key}')


def register(panel: Panel) -> None:
    nav_registered('/settings')
    roles = RoleService(panel.engine, panel.boards)

    @ui.page('/settings')
    async def settings_page(request: Request) -> RedirectResponse | None:
        user = await page_user(request, panel.auth, administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        actor = admin_actor(panel, request, _)

        @ui.refreshable
        async def role_list() -> None:
            for r in await roles.roles():
                with ui.row().classes('w-full items-center gap-3 no-wrap border-b border-slate-100 py-2').mark(
                        f'role-{r.id}'):
                    with ui.column().classes('gap-0 min-w-0 grow'):
                        ui.label(r.name).classes('font-medium [overflow-wrap:anywhere]')
                        ui.label(', '.join(_flags(_, r)) or _('plain member')).classes('text-sm text-slate-500')
                    ui.label(_('Members: {count}').format(count=r.members)).classes('text-sm shrink-0')
                    _row_buttons(lambda r=r: edit_role(r), lambda r=r: remove_role(r), f'role-{r.id}')

        @ui.refreshable
        async def type_list() -> None:
            kinds = await roles.types()
            if not kinds:
                empty(_('No machine types yet: add one before adding machines.'))
            for t in kinds:
                with ui.row().classes('w-full items-center gap-3 no-wrap border-b border-slate-100 py-2').mark(
                        f'type-{t.id}'):
                    with ui.column().classes('gap-0 min-w-0 grow'):
                        ui.label(t.name).classes('font-medium [overflow-wrap:anywhere]')
                        logoff = (_('logoff after {minutes} min').format(minutes=t.auto_logoff_minutes)
                                  if t.auto_logoff_minutes else _('no automatic logoff'))
                        grace = _('grace {minutes} min').format(minutes=t.grace_minutes)
                        needs = _('authorization needed') if t.authorization_required else _('no authorization needed')
                        ui.label(f'{logoff} · {grace} · {needs}').classes('text-sm text-slate-500')
                    ui.label(_('Machines: {count}').format(count=t.machines)).classes('text-sm shrink-0')
                    _row_buttons(lambda t=t: edit_type(t), lambda t=t: remove_type(t), f'type-{t.id}')

        async def edit_role(role: RoleRow | None = None) -> None:
            if await actor() is not None and await role_dialog(_, roles, actor, role):
                ui.notify(_('Role saved.'), type='positive')
                await role_list.refresh()

        async def remove_role(role: RoleRow) -> None:
            if await delete_role(_, roles, actor, role):
                await role_list.refresh()

        async def edit_type(kind: TypeRow | None = None) -> None:
            if await actor() is not None and await type_dialog(_, roles, actor, kind):
                ui.notify(_('Machine type saved.'), type='positive')
                await type_list.refresh()

        async def remove_type(kind: TypeRow) -> None:
            if await delete_type(_, roles, actor, kind):
                await type_list.refresh()

        with frame(_('Roles and machine types'), _, path='/settings', user=user):
            with ui.element('div').classes('grid grid-cols-1 lg:grid-cols-2 gap-4 w-full'):
                with ui.card().classes('w-full'):
                    with ui.row().classes('w-full items-center justify-between'):
                        ui.label(_('Roles')).classes(SECTION)
                        ui.button(_('Add a role'), icon='add', on_click=lambda: edit_role()).mark('add-role')
                    await role_list()
                with ui.card().classes('w-full'):
                    with ui.row().classes('w-full items-center justify-between'):
                        ui.label(_('Machine types')).classes(SECTION)
                        ui.button(_('Add a type'), icon='add', on_click=lambda: edit_type()).mark('add-type')
                    await type_list()
        return None
