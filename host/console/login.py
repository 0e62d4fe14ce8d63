"""Logging in and out of the console: ``/login`` trades the API key for a session cookie
(a fresh session each time: no fixation), ``/logout`` drops it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from .auth import SESSION_COOKIE, Auth, check_host, check_origin, key_matches
from .deps import Authed, ConsoleDep
from .headers import root_of
from .inputs import local_target, read_form
from .state import set_cookie

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/login")
async def login_page(request: Request, console: ConsoleDep, next: str = "") -> Response:
    target = local_target(next or f"{root_of(request)}/")
    if request.app.state.api_key is None:  # nothing to log in to
        return RedirectResponse(target, status_code=303)
    return console.render(request, Auth(None), "login.html", next=target, error=None, need_key=True)


@router.post("/login")
async def login(request: Request, console: ConsoleDep) -> Response:
    check_origin(request)
    expected: str | None = request.app.state.api_key
    if expected is None:
        check_host(request, console.sessions.bound)
    form = await read_form(request)
    target = local_target(form.get("next") or f"{root_of(request)}/")
    if expected is not None and not key_matches(expected, form.get("api_key")):
        return console.render(
            request,
            Auth(None),
            "login.html",
            status=401,
            next=target,
            error="That is not the API key of this host.",
            need_key=True,
        )
    # a session id the browser held before is never carried over (no session fixation)
    console.sessions.drop(request.cookies.get(SESSION_COOKIE))
    session = console.sessions.new()
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, session.id)
    return response


@router.post("/logout")
async def logout(request: Request, console: ConsoleDep, found: Authed) -> Response:
    if found.session is not None:
        console.sessions.drop(found.session.id)
    response: Response
    login = f"{root_of(request)}/login"
    if request.headers.get("hx-request"):  # htmx follows the header, not a redirect
        response = Response(status_code=200, headers={"HX-Redirect": login})
    else:
        response = RedirectResponse(login, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
