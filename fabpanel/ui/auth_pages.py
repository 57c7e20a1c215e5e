"""Sign-in, sign-out, forgotten password, password reset and change: the account pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi.responses import RedirectResponse
from nicegui import app, ui
from starlette.requests import Request

from fabpanel.core.auth import safe_next, valid_email
from fabpanel.i18n import Translator
from fabpanel.services.auth import AuthError, AuthService

from .layout import frame, page_language
from .session import COOKIE, Handoffs, page_user


def _new_password_form(_: Translator, save: Callable[[str], Awaitable[str | None]]) -> None:
    """Two password fields and a save button; `save` returns an error text or None."""
    new = ui.input(_('New password'), password=True).props(
        'autocomplete=new-password data-testid=new-password').classes('w-full').mark('new-password')
    again = ui.input(_('New password again'), password=True).props(
        'autocomplete=new-password data-testid=new-password-again').classes('w-full').mark('new-password-again')
    error = ui.label().classes('text-red-700').props('role=alert')

    async def submit() -> None:
        if new.value != again.value:
            error.text = _('The two passwords differ.')
            return
        error.text = await save(new.value or '') or ''

    ui.button(_('Save the password'), on_click=submit).classes('w-full').props('data-testid=save-password').mark(
        'save-password')


def register(auth: AuthService, secure_cookies: bool) -> None:
    handoffs = Handoffs()

    @app.get('/auth/complete')
    def complete(code: str = '') -> RedirectResponse:
        item = handoffs.take(code)
        if item is None:
            return RedirectResponse('/login', status_code=303)
        token, target = item
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite='lax', secure=secure_cookies, max_age=14 * 24 * 3600, path='/'
        )
        return response

    @app.get('/logout')
    async def logout(request: Request) -> RedirectResponse:
        await auth.close_session(request.cookies.get(COOKIE))
        response = RedirectResponse('/login', status_code=303)
        response.delete_cookie(COOKIE, path='/')
        return response

    @ui.page('/login')
    async def login(request: Request, next: str = '/') -> None:  # noqa: A002 - the query parameter's name
        _ = page_language(request)
        target = safe_next(next)
        with frame(_('Sign in'), _, path='/login'), ui.card().classes('w-full max-w-sm self-center'):
            email = (
                ui.input(_('E-mail'))
                .props('type=email autocomplete=username autofocus')
                .classes('w-full')
                .props('data-testid=email')
                .mark('email')
            )
            password = (
                ui.input(_('Password'), password=True)
                .props('autocomplete=current-password')
                .classes('w-full')
                .props('data-testid=password')
                .mark('password')
            )
            error = ui.label().classes('text-red-700').props('role=alert')

            async def submit() -> None:
                error.text = ''
                if not email.value or not password.value:
                    error.text = _('Enter your e-mail and password.')
                    return
                try:
                    user = await auth.sign_in(email.value, password.value)
                except AuthError as e:
                    error.text = (
                        _('Too many failed attempts: try again in 15 minutes.')
                        if e.code == 'locked'
                        else _('E-mail or password is wrong.')
                    )
                    password.value = ''
                    return
                token = await auth.open_session(user.member_id)
                ui.navigate.to(f'/auth/complete?code={handoffs.create(token, target)}')

            password.on('keydown.enter', submit)
            ui.button(_('Sign in'), on_click=submit).classes('w-full').props('data-testid=signin').mark('signin')
            ui.link(_('Forgot your password?'), '/forgot').classes('text-sm')

    @ui.page('/forgot')
    async def forgot(request: Request) -> None:
        _ = page_language(request)
        with frame(_('Forgotten password'), _, path='/forgot'), ui.card().classes('w-full max-w-sm self-center'):
            ui.label(_('Enter the e-mail address of your account. We will send you a link to choose a new password.'))
            email = (
                ui.input(_('E-mail'))
                .props('type=email autocomplete=username')
                .classes('w-full')
                .props('data-testid=email')
                .mark('email')
            )
            done = ui.label().classes('text-green-800').props('role=status')
            error = ui.label().classes('text-red-700').props('role=alert')

            async def submit() -> None:
                error.text = ''
                if not valid_email(email.value or ''):
                    error.text = _('This is not an e-mail address.')
                    return
                await auth.request_reset(email.value)
                # the same answer whether or not the address has an account
                done.text = _('If an account uses this address, a link is on its way. It works for one hour.')
                email.value = ''

            ui.button(_('Send the link'), on_click=submit).classes('w-full').props('data-testid=send-reset').mark(
                'send-reset'
            )

    @ui.page('/reset')
    async def reset(request: Request, token: str = '') -> None:
        _ = page_language(request)
        weak = _('Choose a longer password: at least 10 characters, not your e-mail.')

        async def save(password: str) -> str | None:
            try:
                await auth.reset_password(token, password)
            except AuthError as e:
                return _('This link is no longer valid: ask for a new one.') if e.code == 'bad_token' else weak
            ui.notify(_('Your password is changed. Sign in with it.'), type='positive')
            ui.navigate.to('/login')
            return None

        with frame(_('Choose a new password'), _, path='/reset'), ui.card().classes('w-full max-w-sm self-center'):
            _new_password_form(_, save)

    @ui.page('/account/password')
    async def change_password(request: Request) -> RedirectResponse | None:
        user = await page_user(request, auth)
        if isinstance(user, RedirectResponse):
            return user
        _ = page_language(request, user)
        token = request.cookies.get(COOKIE)
        with (
            frame(_('Change your password'), _, path='/account/password', user=user),
            ui.card().classes('w-full max-w-sm self-center'),
        ):
            if user.must_change_password:
                ui.label(_('Please choose your own password before you go on.')).classes('text-amber-800')

            async def save(password: str) -> str | None:
                try:
                    await auth.change_password(user.member_id, password, keep_session=token)
                except AuthError:
                    return _('Choose a longer password: at least 10 characters, not your e-mail.')
                ui.notify(_('Your password is changed.'), type='positive')
                ui.navigate.to('/')
                return None

            _new_password_form(_, save)
        return None

    @ui.page('/forbidden')
    def forbidden(request: Request) -> None:
        _ = page_language(request)
        with frame(_('Not allowed'), _, path='/forbidden'):
            ui.label(_('Your role does not allow this page.'))
            ui.link(_('Back to the dashboard'), '/')
