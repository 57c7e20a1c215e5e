"""New cards (admins): the unknown cards boards have seen lately, made into members or given to one, and the
guided 'swipe the new card on machine X now' that binds the next unknown card shown there."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi.responses import RedirectResponse
from nicegui import context, ui
from starlette.requests import Request

from fabpanel.core.cards import is_board_uid
from fabpanel.i18n import Translator
from fabpanel.services.auth import CurrentUser
from fabpanel.services.enrolment import WAIT_SECONDS, CardWait, EnrolmentService, Sighting
from fabpanel.services.members import MemberError, MemberService

from .components import aria, confirm, empty
from .layout import frame, nav_registered, page_language
from .members import acting, card_chip, error_text, field_error, when_text
from .session import administers, page_user

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fabpanel.app import Panel

NEW_MEMBER = 0  # the member picker's 'a new member' choice


@dataclass(kw_only=True, slots=True)
class _Waiting:
    wait: CardWait | None = None
    deadline: float = 0.0


def _new_member_target(uid: str) -> str | None:
    """Where 'make a member' goes; only for ids a board could send (so nothing else ever ends up in a URL)."""
    return f'/members/new?card={uid}' if is_board_uid(uid) else None


def _guided(_: Translator, enrol: EnrolmentService, members: MemberService, machines: list[tuple[int, str]],
            choices: dict[int, str], current: Callable[[], Awaitable[CurrentUser | None]],
            changed: Callable[[], Awaitable[None]]) -> None:
    state = _Waiting()
    with ui.card().classes('w-full gap-2'):
        ui.label(_('Swipe a new card now')).classes('text-lg font-semibold')
        ui.label(_('Pick the machine you are standing at and who gets the card, press "Wait for the card", then show '
                   'the card to that machine\'s reader.')).classes('text-sm text-slate-600')
        with ui.row().classes('w-full items-end gap-2'):
            machine = ui.select(dict(machines), label=_('Machine'), with_input=True).classes(
                'grow min-w-[12rem]').mark('wait-machine')
            member = ui.select({NEW_MEMBER: _('A new member'), **choices}, value=NEW_MEMBER, label=_('Give it to'),
                               with_input=True).classes('grow min-w-[12rem]').mark('wait-member')
        error = field_error('wait-error')
        status = ui.label().classes('text-lg font-semibold text-blue-800').props('role=status aria-live=polite').mark(
            'countdown')
        with ui.row().classes('gap-2'):
            start = ui.button(_('Wait for the card'), icon='contactless').mark('wait')
            cancel = ui.button(_('Cancel'), icon='close').props('flat').mark('cancel-wait')
            cancel.set_visibility(False)

    def tick() -> None:
        if state.wait is not None and state.wait.waiting:
            left = max(0, round(state.deadline - time.monotonic()))
            status.text = _('Swipe the new card on {machine} now: {seconds} s left.').format(
                machine=dict(machines).get(machine.value, '?'), seconds=left)

    timer = ui.timer(1.0, tick, active=False)

    def stop() -> None:
        if state.wait is not None:
            state.wait.close()  # also when the browser goes away: nothing stays subscribed

    async def wait_for_card() -> None:
        error.text = ''
        actor = await current()
        if actor is None or (state.wait is not None and state.wait.waiting):
            return
        member_id = member.value or None
        try:
            state.wait = await enrol.start_wait(actor, machine.value or 0, member_id)
        except MemberError as e:
            error.text = error_text(_, e)
            return
        state.deadline = time.monotonic() + WAIT_SECONDS
        start.set_enabled(False)
        cancel.set_visibility(True)
        timer.activate()
        tick()
        try:
            uid = await state.wait.next(WAIT_SECONDS)
        finally:
            timer.deactivate()
            start.set_enabled(True)
            cancel.set_visibility(False)
        if uid is None:
            status.text = _('No new card was shown. Nothing changed.')
            return
        if member_id is None:
            target = _new_member_target(uid)
            if target is not None:
                ui.navigate.to(target)
            return
        try:
            await members.add_card(actor, member_id, uid)
        except MemberError as e:
            status.text = ''
            error.text = error_text(_, e)
            return
        status.text = _('Card {card} now belongs to {name}.').format(card=uid, name=choices.get(member_id, '?'))
        await changed()

    start.on_click(wait_for_card)
    cancel.on_click(stop)
    context.client.on_disconnect(stop)


def _sighting_row(_: Translator, s: Sighting, give: Callable[[Sighting], Awaitable[None]],
                  forget: Callable[[Sighting], Awaitable[None]]) -> None:
    with ui.card().classes('w-full gap-1 p-3').props(f'data-card={s.uid}').mark(f'sighting-{s.uid}'):
        with ui.row().classes('w-full items-center justify-between gap-2'):
            card_chip(_, s.uid, board_ok=s.board_ok)
            ui.label(s.machine_name).classes('font-semibold break-words min-w-0 max-w-full')
        ui.label(_('First seen {first} · last seen {last} · attempts: {attempts}').format(
            first=when_text(s.first_seen), last=when_text(s.last_seen), attempts=s.attempts)).classes(
            'text-sm text-slate-600')
        with ui.row().classes('gap-2'):
            target = _new_member_target(s.uid)
            if target is not None:
                ui.button(_('Make a member'), icon='person_add', on_click=lambda t=target: ui.navigate.to(t)).props(
                    'outline').mark(f'make-{s.uid}')
            ui.button(_('Give to a member'), icon='badge', on_click=lambda: give(s)).props('outline').mark(
                f'give-{s.uid}')
            ui.button(_('Forget'), icon='delete', on_click=lambda: forget(s)).props('flat color=negative').mark(
                f'forget-{s.uid}')


def register(panel: Panel) -> None:
    """/members/enrol: admins only."""
    members = MemberService(panel.engine, panel.boards, panel.auth)
    enrol = EnrolmentService(panel.engine, panel.live, members)
    nav_registered('/members/enrol')

    @ui.page('/members/enrol')
    async def enrol_page(request: Request) -> RedirectResponse | None:
        user = await page_user(request, auth=panel.auth, allowed=administers)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        current = acting(panel.auth, request, _)
        machines = await enrol.machines(user)
        choices = dict(await members.choices(user))
        page = [1]
        client = context.client
        with frame(_('New cards'), _, path='/members/enrol', user=user):
            _guided(_, enrol, members, machines, choices, current, lambda: show())
            with ui.card().classes('w-full gap-2'):
                ui.label(_('Cards seen recently')).classes('text-lg font-semibold')
                ui.label(_('Cards the boards did not know, the most recent first.')).classes('text-sm text-slate-600')
                box = ui.column().classes('w-full gap-2')
                with ui.row().classes('w-full items-center justify-center gap-2'):
                    prev = aria(ui.button(icon='chevron_left').props('flat round').mark('prev-page'),
                                _('Previous page'))
                    where = ui.label().mark('page')
                    nxt = aria(ui.button(icon='chevron_right').props('flat round').mark('next-page'), _('Next page'))

        async def show(actor: CurrentUser | None = None) -> None:
            actor = actor or await current()
            if actor is None:
                return
            try:
                found = await enrol.sightings(actor, page[0])
            except MemberError as e:
                ui.notify(error_text(_, e), type='negative')
                return
            page[0] = found.page
            box.clear()
            with box:
                if not found.rows:
                    empty(_('No unknown cards were seen.'))
                for s in found.rows:
                    _sighting_row(_, s, give, forget)
            where.text = _('Page {page} of {pages}').format(page=found.page, pages=found.pages)
            prev.set_enabled(found.page > 1)
            nxt.set_enabled(found.page < found.pages)

        async def give(s: Sighting) -> None:
            with ui.dialog() as dialog, ui.card().classes('w-full max-w-md'):
                ui.label(_('Give card {card} to').format(card=s.uid)).classes('text-lg font-semibold')
                who = ui.select(choices, label=_('Member'), with_input=True).classes('w-full').mark('give-member')
                label = ui.input(_('Label (optional)')).classes('w-full').mark('give-label')
                problem = field_error('give-error')

                async def ok() -> None:
                    actor = await current()
                    if actor is None:
                        return
                    if not who.value:
                        problem.text = _('Choose a member.')
                        return
                    try:
                        await enrol.give(actor, s.uid, who.value, label.value or '')
                    except MemberError as e:
                        problem.text = error_text(_, e)
                        return
                    dialog.submit(True)
                    ui.notify(_('Card {card} now belongs to {name}.').format(card=s.uid, name=choices[who.value]),
                              type='positive')

                with ui.row().classes('w-full justify-end gap-2'):
                    ui.button(_('Cancel'), on_click=lambda: dialog.submit(False)).props('flat')
                    ui.button(_('Give the card'), on_click=ok).mark('give-ok')
            if await dialog:
                await show()
            dialog.delete()

        async def forget(s: Sighting) -> None:
            if not await confirm(_, _('Forget this card?'), _(
                    'Card {card} leaves this list; nobody gets it. If it is shown to a board again, it comes back.'
                    ).format(card=s.uid), _('Forget')):
                return
            actor = await current()
            if actor is None:
                return
            try:
                await enrol.forget(actor, s.uid)
            except MemberError as e:
                ui.notify(error_text(_, e), type='negative')
                return
            await show()

        async def turn(step: int) -> None:
            page[0] += step
            await show()

        pending = [False]

        async def seen(_arg: tuple[int, str]) -> None:
            # a board met an unknown card: show it here once its sighting is written (one refresh at a time)
            if pending[0]:
                return
            pending[0] = True
            try:
                await panel.boards.settle()
                with client:
                    await show()
            finally:
                pending[0] = False

        prev.on_click(lambda: turn(-1))
        nxt.on_click(lambda: turn(1))
        panel.live.events.card_unknown.subscribe(seen)
        client.on_delete(lambda: panel.live.events.card_unknown.unsubscribe(seen))
        await show(user)
        return None
