"""The console in a real browser (Debian's chromium through Playwright) against a real host.

Each test saves screenshots of what it checked (light and dark, desktop and phone width) into a
temporary directory, or into ``$AGENTHOST_SCREENSHOTS`` when set:
``AGENTHOST_SCREENSHOTS=docs/console`` refreshes the pictures docs/console.md shows."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from playwright.sync_api import expect

from host.eventstore.sqlite import SqliteEventStore

from .conftest import PROBE, ConsoleHost, screenshot_dir

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 760}
SECONDS = 15_000


def _session_cookie(host: ConsoleHost) -> dict[str, Any]:
    response = httpx.post(
        f"{host.url}/login", data={"api_key": host.key, "next": "/"}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    value = response.cookies["agenthost_console"]
    return {"name": "agenthost_console", "value": value, "url": host.url}


@pytest.fixture
def new_page(browser: Any, console_host: ConsoleHost) -> Iterator[Any]:
    """Opens a logged-in page: ``new_page(dark=False, phone=False)``."""
    contexts: list[Any] = []
    blocked: list[str] = []

    def make(*, dark: bool = False, phone: bool = False, login: bool = True) -> Any:
        context = browser.new_context(
            color_scheme="dark" if dark else "light",
            viewport=PHONE if phone else DESKTOP,
            device_scale_factor=1,
        )
        contexts.append(context)
        if login:
            context.add_cookies([_session_cookie(console_host)])
        page = context.new_page()
        page.set_default_timeout(SECONDS)
        page.on(
            "console",
            lambda message: (
                blocked.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
        return page

    yield make
    for context in contexts:
        context.close()
    assert blocked == []  # the console itself never trips its Content-Security-Policy


def _shot(page: Any, name: str) -> None:
    folder = screenshot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def _talk(host: ConsoleHost, agent: str, room: UUID, *texts: str) -> list[dict[str, Any]]:
    with host.api() as api:
        replies = []
        for text in texts:
            response = api.post(
                f"/agents/{agent}/messages", json={"text": text, "room_id": str(room)}
            )
            assert response.status_code == 200, response.text
            replies.append(response.json())
        return replies


def test_login_page_then_chat_streams_the_reply_token_by_token(
    new_page: Any, console_host: ConsoleHost
) -> None:
    page = new_page(login=False)
    page.goto(console_host.url + "/")
    assert "/login" in page.url
    page.get_by_label("API key").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "That is not the API key of this host."
    page.get_by_label("API key").fill(console_host.key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(console_host.url + "/")
    page.get_by_label("Agent").select_option("Eliza")
    page.get_by_role("button", name="Open").click()
    page.wait_for_url(re.compile(r"agent=Eliza"))
    page.evaluate(
        """() => { window.__chunks = 0;
        document.addEventListener('htmx:sseMessage', e => {
            if (e.detail.type === 'chunk') window.__chunks += 1; }); }"""
    )
    page.get_by_label("Message to Eliza").fill("I feel sad about my mother")
    page.get_by_label("Message to Eliza").press("Enter")
    agent_reply = page.locator("#conversation li.agent").last
    agent_reply.get_by_text("Stage timings").wait_for()
    text = agent_reply.locator("p.text").inner_text()
    assert "family" in text.lower() or "mother" in text.lower(), text
    assert page.evaluate("window.__chunks") >= 3  # one swap per streamed token
    timings = agent_reply.locator("dl").inner_text()
    for stage in ("memory", "providers", "model", "total"):
        assert stage in timings
    assert "Actions run: 0" in agent_reply.inner_text()
    # for screen readers: the whole reply once, through the live region that was already there
    expect(page.locator("#announce")).to_have_text(f"Eliza replied: {text}")
    assert page.get_by_role("status").count() == 1  # no new, silent live region per reply
    assert page.locator("#conversation p.text[aria-live]").count() == 0  # tokens not read
    assert page.get_by_label("Message to Eliza").evaluate("e => e === document.activeElement")
    room = page.locator("#room-field").input_value()
    UUID(room)  # the new room's id, kept for the next message
    page.get_by_label("Message to Eliza").fill("It was my father too")
    page.get_by_role("button", name="Send").click()
    page.locator("#conversation li.agent").nth(1).get_by_text("Stage timings").wait_for()
    assert page.locator("#room-field").input_value() == room

    page.locator("#conversation li.agent").last.get_by_role(
        "button", name="What the agent saw"
    ).click()
    saw = page.locator(".saw-box").last
    saw.wait_for()
    assert "text_large via eliza" in saw.inner_text()
    summaries = saw.locator("summary").all_inner_texts()
    assert "Message from console" in summaries and "Recent conversation" in summaries
    assert "Probe mood" in summaries  # the consoleprobe plugin's provider text
    saw.locator("summary", has_text="Recent conversation").click()
    assert "I feel sad about my mother" in saw.inner_text()
    assert "It was my father too" in saw.locator("q").first.inner_text()
    _shot(page, "chat-light")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(console_host.url + "/console/agents")
    assert "/login?next=%2Fconsole%2Fagents" in page.url  # the session is gone

    dark = new_page(dark=True, phone=True)
    dark.goto(f"{console_host.url}/console/chat?agent=Eliza&room={room}")
    assert dark.locator("#conversation li").count() == 4  # history of the room
    dark.locator("#conversation li.agent").first.get_by_role(
        "button", name="What the agent saw"
    ).click()
    dark.locator(".saw-box").wait_for()
    _shot(dark, "chat-dark-phone")


def test_memories_page_by_page_search_and_delete(new_page: Any, console_host: ConsoleHost) -> None:
    room = uuid4()
    texts = [f"note {i}: I remember the lighthouse number {i}" for i in range(11)]
    texts[4] = "my mother sailed to the harbour"
    _talk(console_host, "eliza", room, *texts)  # 22 memories: 2 pages of 20
    page = new_page()
    page.goto(f"{console_host.url}/console/memories?agent=Eliza&room={room}")
    items = page.locator("#memory-list > li.memory")
    expect(items).to_have_count(20)  # count() does not wait for the page or a swap
    first_page = items.all_inner_texts()
    page.get_by_role("link", name="Next page").click()
    expect(items).to_have_count(2)
    assert not set(items.all_inner_texts()) & set(first_page)
    assert "note 0" in items.last.inner_text()  # newest first: the oldest comes last
    assert page.get_by_role("link", name="Next page").count() == 0
    page.get_by_role("link", name="First page").click()
    expect(items).to_have_count(20)

    page.get_by_label("Search this room's memories by meaning").fill("mother sailed harbour")
    page.get_by_role("button", name="Search").click()
    assert "my mother sailed to the harbour" in items.first.inner_text()
    assert "similarity" in items.first.inner_text()
    _shot(page, "memories-search-light")

    page.get_by_role("link", name="Back to all memories").click()
    victim = items.first.locator("p.text").inner_text()
    items.first.get_by_role("button", name=re.compile("Delete memory")).click()
    expect(items).to_have_count(19)  # (no wait_for_function: the page's CSP forbids eval)
    page.reload()
    assert victim not in page.locator("#memory-list").inner_text()
    expect(items).to_have_count(20)  # the next page's first memory moved up

    dark = new_page(dark=True, phone=True)
    dark.goto(f"{console_host.url}/console/memories?agent=Eliza&room={room}")
    _shot(dark, "memories-dark-phone")
    page.get_by_role("button", name="Delete all memories of this room").click()
    assert page.get_by_role("status").filter(has_text="Deleted").inner_text() == (
        "Deleted 21 memories."
    )
    with console_host.api() as api:
        assert api.get(f"/agents/eliza/rooms/{room}/memories").json()["items"] == []


def test_timeline_filter_and_replay_with_divergence(
    new_page: Any, console_host: ConsoleHost
) -> None:
    room = uuid4()
    replies = _talk(console_host, "eliza", room, "I feel sad", "Because of my brother")
    page = new_page()
    page.goto(f"{console_host.url}/console/timeline?agent=Eliza&room={room}")
    events = page.locator("ol.events > li.event")
    types = events.locator(".etype").all_inner_texts()
    assert types[0] == "message:received" and "model:used" in types and "message:sent" in types
    assert types.count("message:received") == 2
    page.get_by_label("Event type").select_option("message:sent")
    page.get_by_role("button", name="Show").click()
    assert set(events.locator(".etype").all_inner_texts()) == {"message:sent"}
    assert replies[1]["text"] in events.last.inner_text()

    page.get_by_role("button", name="Replay this room").click()
    report = page.locator("#replay-result .report")
    report.wait_for()
    assert "Replay matches the recording" in report.inner_text(), report.inner_text()
    assert "2 message(s) replayed" in report.inner_text()
    _shot(page, "timeline-light")

    # Record a different reply to the second message: the replay must point at it.
    async def tamper() -> None:
        store = await SqliteEventStore.open(console_host.events_file)
        try:
            sent = [
                e
                async for e in store.iter_events(replies[1]["agent_id"])
                if e.event_type == "message:sent"
                and e.correlation_id == UUID(replies[1]["message_id"])
            ]
            data = dict(sent[0].data)
            message = dict(data["message"])  # type: ignore[arg-type]
            message["content"] = {**message["content"], "text": "A recorded answer"}  # type: ignore[dict-item]
            data["message"] = message
            await store.append_event(
                sent[0].model_copy(
                    update={"data": data, "version": 0, "position": None, "id": uuid4()}
                )
            )
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs on this thread
        thread.submit(asyncio.run, tamper()).result()
    page.get_by_role("button", name="Replay this room").click()
    page.get_by_text("Replay DIVERGES from the recording").wait_for()
    divergences = page.locator(".divergences li").all_inner_texts()
    assert any("reply" in d and "A recorded answer" in d for d in divergences), divergences
    dark = new_page(dark=True, phone=True)
    dark.goto(f"{console_host.url}/console/timeline?agent=Eliza&room={room}")
    dark.get_by_role("button", name="Replay this room").click()
    dark.get_by_text("Replay DIVERGES from the recording").wait_for()
    _shot(dark, "timeline-dark-phone")


def test_plugins_page_reloads_a_plugin_in_dev_mode(
    new_page: Any, console_host: ConsoleHost
) -> None:
    page = new_page()
    page.goto(f"{console_host.url}/console/plugins")
    row = page.locator("#plugin-consoleprobe")
    assert "loaded" in row.inner_text() and "never" in row.inner_text()
    console_host.probe.write_text(PROBE.format(value="second"))
    row.get_by_role("button", name="Reload consoleprobe").click()
    expect(row).not_to_contain_text("never")
    assert re.search(r"ok\s+\S+ \S+ UTC, [\d.]+ ms", row.inner_text()), row.inner_text()
    when = datetime.fromisoformat(row.locator("time.reloaded-at").get_attribute("datetime"))
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60  # the last reload's time
    with console_host.api() as api:
        last = api.get("/plugins/consoleprobe").json()["last_reload"]
        assert datetime.fromisoformat(last["at"]) >= when  # the watcher may reload it again
    assert page.evaluate("document.activeElement.textContent") == "Reload consoleprobe"
    assert "Not reloadable" in page.locator("#plugin-audit").inner_text()  # opts out
    broken = page.locator("#plugin-brokenprobe")
    assert "failed" in broken.inner_text() and "at setup" in broken.inner_text()
    _shot(page, "plugins-light")
    reply = _talk(console_host, "eliza", uuid4(), "hello there")[0]
    saw = new_page()
    saw.goto(f"{console_host.url}/console/chat?agent=Eliza&room={reply['room_id']}")
    saw.get_by_role("button", name="What the agent saw").click()
    saw.locator(".saw-box summary", has_text="Probe mood").click()
    assert "second" in saw.locator(".saw-box").inner_text()  # the reloaded provider's text


def test_stored_markup_is_shown_as_text(new_page: Any, console_host: ConsoleHost) -> None:
    """Memories, characters and plugin errors holding markup render as text: no script runs,
    no element is made from them."""
    room = uuid4()
    attack = "<img src=x onerror=\"window.__pwned = 'memory'\"><script>window.__pwned = 1</script>"
    _talk(console_host, "eliza", room, attack)
    page = new_page()
    for path in (
        f"/console/memories?agent=Eliza&room={room}",
        f"/console/chat?agent=Eliza&room={room}",
        f"/console/timeline?agent=Eliza&room={room}",
        "/console/agents",
        "/console/plugins",
    ):
        page.goto(console_host.url + path)
        assert page.evaluate("window.__pwned") is None, path
        assert page.locator("main img, main script, main b").count() == 0, path
    page.goto(f"{console_host.url}/console/memories?agent=Eliza&room={room}")
    assert attack in page.locator("#memory-list").inner_text()
    page.goto(f"{console_host.url}/console/agents")
    ada = page.locator("article", has_text="@ada")
    ada.get_by_text("Character").click()
    assert '<script>window.__pwned = "bio"</script>' in ada.inner_text()
    assert "<b>bold</b>" in ada.inner_text()
    assert "ada-secret-value" not in page.content()  # a character's secrets are never shown
    page.goto(f"{console_host.url}/console/plugins")
    assert (
        '<script>window.__pwned = "plugin"</script>'
        in page.locator("#plugin-brokenprobe").inner_text()
    )
    # a reply streamed into the page is escaped too
    page.goto(f"{console_host.url}/console/chat?agent=Eliza&room={room}")
    page.get_by_label("Message to Eliza").fill(attack)
    page.get_by_role("button", name="Send").click()
    page.locator("#conversation li.agent").last.get_by_text("Stage timings").wait_for()
    page.locator("#conversation li.agent").last.get_by_role(
        "button", name="What the agent saw"
    ).click()
    page.locator(".saw-box").wait_for()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img, main script").count() == 0


def test_agents_stop_and_start(new_page: Any, console_host: ConsoleHost) -> None:
    page = new_page()
    page.goto(f"{console_host.url}/console/agents")
    ada = page.locator("article", has_text="@ada")
    assert "running" in ada.inner_text()
    _shot(page, "agents-light")
    ada.get_by_role("button", name="Stop Ada").click()
    ada.get_by_role("button", name="Start Ada").wait_for()
    assert "stopped" in ada.inner_text()
    # keyboard focus stays on the card's button, now the other one
    assert page.evaluate("document.activeElement.textContent") == "Start Ada"
    expect(page.locator("#announce")).to_have_text("Ada is stopped.")
    with console_host.api() as api:
        assert {a["name"]: a["running"] for a in api.get("/agents").json()}["Ada"] is False
    ada.get_by_role("button", name="Start Ada").click()
    ada.get_by_role("button", name="Stop Ada").wait_for()
    with console_host.api() as api:
        assert {a["name"]: a["running"] for a in api.get("/agents").json()}["Ada"] is True
    dark = new_page(dark=True, phone=True)
    dark.goto(f"{console_host.url}/console/agents")
    dark.locator("article", has_text="@ada").get_by_text("Character").click()
    _shot(dark, "agents-dark-phone")


def test_metrics_refresh(new_page: Any, console_host: ConsoleHost) -> None:
    _talk(console_host, "eliza", uuid4(), "one", "two")
    page = new_page()
    page.goto(f"{console_host.url}/console/metrics")
    before = int(page.locator("#m-processed").inner_text())
    assert before >= 2
    assert page.locator("#stages th[scope=row]").all_inner_texts()[:3] == [
        "memory",
        "providers",
        "model",
    ]
    assert "text_large" in page.locator("#models").inner_text()
    _talk(console_host, "eliza", uuid4(), "three", "four", "five")
    expect(page.locator("#m-processed")).not_to_have_text(str(before))  # refreshed
    assert int(page.locator("#m-processed").inner_text()) >= before + 3
    page.wait_for_selector("polyline.spark")
    _shot(page, "metrics-light")
    dark = new_page(dark=True, phone=True)
    dark.goto(f"{console_host.url}/console/metrics")
    dark.wait_for_selector("polyline.spark")
    _shot(dark, "metrics-dark-phone")


def test_keyboard_reaches_every_control_in_order(new_page: Any, console_host: ConsoleHost) -> None:
    page = new_page()
    page.goto(f"{console_host.url}/console/chat?agent=Eliza")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "(() => { const e = document.activeElement;"
                " return e.labels && e.labels.length ? e.labels[0].innerText : e.innerText })()"
            )
        )
    assert order[:5] == ["Agent", "Room", "Open", "Message to Eliza", "Send"], order
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !e.labels || e.labels.length === 0).map(e => e.outerHTML)"""
    )
    assert unlabeled == []


def test_every_page_fits_a_phone_and_labels_every_control(
    new_page: Any, console_host: ConsoleHost
) -> None:
    """At 390 px nothing scrolls sideways (details opened, long words and ids included), and
    every field has a label and every button a name, on every page."""
    room = uuid4()
    word = "Supercalifragilistic" * 8  # one unbreakable 160-character word
    reply = _talk(console_host, "eliza", room, f"{word} and https://example.org/{word}")[0]
    page = new_page(phone=True)
    pages = [
        f"/console/chat?agent=Eliza&room={room}",
        f"/console/memories?agent=Eliza&room={room}",
        f"/console/memories?agent=Eliza&room={room}&q={word}",
        f"/console/timeline?agent=Eliza&room={room}&after=oops",
        "/console/agents",
        "/console/plugins",
        "/console/metrics",
    ]
    for path in pages:
        page.goto(console_host.url + path)
        for summary in page.locator("main details > summary").all():
            summary.click()
        if path.startswith("/console/chat"):
            page.get_by_role("button", name="What the agent saw").click()
            page.locator(".saw-box").wait_for()
            for summary in page.locator(".saw-box details > summary").all():
                summary.click()
        if path.startswith("/console/timeline"):
            page.get_by_role("button", name="Replay this room").click()
            page.locator("#replay-result .report").wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .slice(0, 5).map(e => e.tagName + '.' + e.className)"""
        )
        assert width <= PHONE["width"], (path, width, wide)
        unlabeled = page.evaluate(
            """() => [...document.querySelectorAll(
                'input:not([type=hidden]), select, textarea')]
                .filter(e => !e.labels || e.labels.length === 0).map(e => e.outerHTML)"""
        )
        assert unlabeled == [], path
        nameless = page.evaluate(
            """() => [...document.querySelectorAll('button, a[href]')]
                .filter(e => !(e.getAttribute('aria-label') || e.textContent).trim())
                .map(e => e.outerHTML)"""
        )
        assert nameless == [], path
    assert reply["text"]
    login = new_page(phone=True, login=False)
    login.goto(console_host.url + "/login")
    assert login.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert login.get_by_label("API key").count() == 1
