"""The composer (issue 11 item 1) in a real browser: the toolbar works on
selections and lines, lists continue on Enter, links come from a dialog,
the live preview is the server's rendering, pasted rich text is reduced to
the Markdown subset, and no toolbar action leaves broken Markdown behind
(seeded random texts and selections, checked against the server's
renderer). At desktop and phone sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Ats, Browsers

pytestmark = pytest.mark.browser

MESSAGE = '[data-testid="message"][data-seq]'
SIZES = {"desktop": {}, "phone": {"width": 390, "height": 844, "mobile": True}}


def open_pair(browsers: Browsers, ats: Ats, size: str = "desktop") -> tuple[Page, Page]:
    alice = ats.staff("Alice Recruiter")
    app = ats.application("app", "Cara Candidate")
    staff = browsers.staff_at(ats, alice, app, **SIZES[size])
    candidate = browsers.open(ats.candidate_link(app.id))
    expect(staff.get_by_test_id("composer")).to_be_enabled()
    return staff, candidate


def last_message(page: Page) -> Locator:
    return page.locator(MESSAGE).last.locator(".msg-body")


def tool(page: Page, name: str) -> Locator:
    return page.get_by_role("button", name=name)


@pytest.mark.parametrize("size", SIZES)
def test_bold_on_a_selected_word_sends_bold(
    browsers: Browsers, ats: Ats, size: str, screenshots: Path
) -> None:
    staff, candidate = open_pair(browsers, ats, size)
    box = staff.get_by_test_id("composer")
    box.press_sequentially("Parking is free")
    for _ in "free":
        box.press("Shift+ArrowLeft")
    tool(staff, "Bold").click()
    expect(box).to_have_value("Parking is **free**")
    preview = staff.get_by_test_id("composer-preview")
    expect(preview.locator("strong")).to_have_text("free")
    staff.screenshot(path=str(screenshots / f"composer-preview-{size}.png"))
    staff.get_by_test_id("send").click()
    expect(last_message(candidate).locator("strong")).to_have_text("free")
    expect(last_message(candidate)).to_have_text("Parking is free")
    expect(preview).to_be_hidden()


def test_after_shift_enter_italic_and_list_act_on_the_current_line(
    browsers: Browsers, ats: Ats
) -> None:
    staff, candidate = open_pair(browsers, ats)
    box = staff.get_by_test_id("composer")
    box.press_sequentially("Parking is free")
    box.press("Shift+Enter")
    box.press_sequentially("visitors use bay 3")
    tool(staff, "Italic").click()
    expect(box).to_have_value("Parking is free\n*visitors use bay 3*")
    box.press("Shift+Enter")
    tool(staff, "Bulleted list").click()
    box.press_sequentially("first item")
    box.press("Enter")  # the list goes on
    box.press_sequentially("second item")
    expect(box).to_have_value("Parking is free\n*visitors use bay 3*\n- first item\n- second item")
    box.press("Enter")
    box.press("Enter")  # an empty item ends the list
    expect(box).to_have_value(
        "Parking is free\n*visitors use bay 3*\n- first item\n- second item\n"
    )
    box.press("Enter")  # and Enter sends
    body = last_message(candidate)
    expect(body.locator("em")).to_have_text("visitors use bay 3")
    expect(body.locator("li")).to_have_text(["first item", "second item"])
    expect(body).not_to_contain_text("*")
    expect(body).not_to_contain_text("_")


def test_on_an_empty_line_the_buttons_leave_a_placeholder_to_type_over(
    browsers: Browsers, ats: Ats
) -> None:
    staff, candidate = open_pair(browsers, ats)
    box = staff.get_by_test_id("composer")
    box.focus()
    box.press("Control+b")
    box.press_sequentially("Reminder")
    box.press("End")
    box.press_sequentially(": bring ID")
    expect(box).to_have_value("**Reminder**: bring ID")
    box.press("Control+Enter")
    expect(last_message(candidate).locator("strong")).to_have_text("Reminder")


def test_numbered_lists_continue_and_links_come_from_a_dialog(browsers: Browsers, ats: Ats) -> None:
    staff, candidate = open_pair(browsers, ats)
    box = staff.get_by_test_id("composer")
    tool(staff, "Numbered list").click()
    box.press_sequentially("Bring photo ID")
    box.press("Enter")
    box.press_sequentially("Read the map")
    expect(box).to_have_value("1. Bring photo ID\n2. Read the map")
    for _ in "map":
        box.press("Shift+ArrowLeft")
    tool(staff, "Link").click()
    dialog = staff.get_by_role("dialog", name="Add a link")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Text to show")).to_have_value("map")
    address = dialog.get_by_label("Link address")
    expect(address).to_be_focused()
    address.fill("javascript:alert(1)")
    address.press("Enter")
    expect(dialog.get_by_role("alert")).to_contain_text("web address")
    address.fill("example.org/map")
    dialog.get_by_role("button", name="Add link").click()
    expect(dialog).to_be_hidden()
    expect(box).to_be_focused()
    expect(box).to_have_value("1. Bring photo ID\n2. Read the [map](https://example.org/map)")
    staff.get_by_test_id("send").click()
    body = last_message(candidate)
    expect(body.locator("ol li")).to_have_count(2)
    link = body.get_by_role("link", name="map")
    expect(link).to_have_attribute("href", "https://example.org/map")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(link).to_have_attribute("target", "_blank")


def test_the_link_dialog_cancels_with_escape(browsers: Browsers, ats: Ats) -> None:
    staff, _ = open_pair(browsers, ats)
    box = staff.get_by_test_id("composer")
    box.fill("see the map")
    box.press("Control+k")
    dialog = staff.get_by_role("dialog", name="Add a link")
    expect(dialog).to_be_visible()
    staff.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(box).to_be_focused()
    expect(box).to_have_value("see the map")


PASTED = """
<meta charset="utf-8"><b style="font-weight:normal;" id="docs-internal-guid-1">
<h2>Interview day</h2>
<p>Please arrive <span style="font-weight:700">early</span><span
style="font-weight:700">, by 9</span> and read <span style="font-style:italic">the brief</span>.</p>
<ul><li>Photo <em>ID</em></li><li>Your <a href="https://ok.example/dbs">DBS</a> form</li></ul>
<ol start="3"><li>third</li><li>fourth</li></ol>
<blockquote>Quoted *stars* and 1. numbers</blockquote>
<p><a href="javascript:alert(1)">bad link</a> <img src="x" onerror="window.pwned=1" alt="a map">
<code>x_y</code><script>window.pwned=2</script><style>body{display:none}</style></p>
<table><tr><td>Room</td><td>B12</td></tr></table><hr></b>
"""

EXPECTED_MARKDOWN = """**Interview day**

Please arrive **early, by 9** and read *the brief*.

- Photo *ID*
- Your [DBS](https://ok.example/dbs) form

3. third
4. fourth

Quoted \\*stars\\* and 1. numbers

bad link a map x\\_y

Room · B12"""


def paste(page: Page, html: str, plain: str = "") -> None:
    page.get_by_test_id("composer").focus()
    page.evaluate(
        """([html, plain]) => {
            const data = new DataTransfer();
            data.setData("text/html", html);
            data.setData("text/plain", plain);
            const init = { clipboardData: data, bubbles: true, cancelable: true };
            document.activeElement.dispatchEvent(new ClipboardEvent("paste", init));
        }""",
        [html, plain],
    )


def test_pasted_rich_text_is_reduced_to_the_subset(browsers: Browsers, ats: Ats) -> None:
    staff, candidate = open_pair(browsers, ats)
    box = staff.get_by_test_id("composer")
    paste(staff, PASTED, "Interview day …")
    expect(box).to_have_value(EXPECTED_MARKDOWN)
    staff.get_by_test_id("send").click()
    body = last_message(candidate)
    expect(body.locator("strong").first).to_have_text("Interview day")
    expect(body.locator("ul li")).to_have_text(["Photo ID", "Your DBS form"])
    expect(body.locator("ol li")).to_have_text(["third", "fourth"])
    expect(body.get_by_role("link")).to_have_count(1)
    expect(body.get_by_role("link")).to_have_attribute("href", "https://ok.example/dbs")
    expect(body).to_contain_text("Quoted *stars* and 1. numbers")
    for page in (staff, candidate):
        assert page.evaluate("window.pwned") is None
        assert page.locator(".msg-body img, .msg-body script, .msg-body h2").count() == 0


def test_a_web_address_pasted_over_words_links_them(browsers: Browsers, ats: Ats) -> None:
    staff, _ = open_pair(browsers, ats)
    box = staff.get_by_test_id("composer")
    box.press_sequentially("Read the brief")
    for _ in "the brief":
        box.press("Shift+ArrowLeft")
    staff.evaluate(
        """() => {
            const data = new DataTransfer();
            data.setData("text/plain", "https://ok.example/brief");
            const init = { clipboardData: data, bubbles: true, cancelable: true };
            document.activeElement.dispatchEvent(new ClipboardEvent("paste", init));
        }"""
    )
    expect(box).to_have_value("Read [the brief](https://ok.example/brief)")


# Seeded random lines of words and punctuation (no Markdown characters of
# their own), random selections, every toolbar action; each result must
# render, by the server's own renderer, with the selected words formatted
# and no marker left visible; toggling again must give the text back.
RANDOM_EDITS = """async ([seed, rounds]) => {
  const edit = await import("/static/js/markdown-edit.js");
  let state = seed;
  const rand = (n) => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return Math.floor(state / 65536) % n;
  };
  const pick = (items) => items[rand(items.length)];
  const words = ["Parking", "is", "free", "bay", "3", "(free)", "x(y)z", "café", "—", "it's",
                 "\\"quoted\\"", "end.", "Tues,", "9:30", "e-mail", "a.b", "50%", "ok!", "Zoë",
                 "?"];
  const line = () =>
    Array.from({ length: 1 + rand(6) }, () => pick(words)).join(pick([" ", " ", "  "]));
  const csrf = document.body.dataset.csrf;
  const render = async (body) => {
    const response = await fetch("/api/preview", {
      method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ body }) });
    const html = (await response.json()).html;
    return new DOMParser().parseFromString(html, "text/html").body;
  };
  const apply = (value, e) => value.slice(0, e.from) + e.text + value.slice(e.to);
  const problems = [];
  for (let round = 0; round < rounds; round += 1) {
    const lines = Array.from({ length: 1 + rand(3) }, line);
    const value = lines.join("\\n");
    const kind = pick(["bold", "italic", "list", "numbered"]);
    let s = rand(value.length + 1);
    let e = rand(value.length + 1);
    if (s > e) [s, e] = [e, s];
    const selected = value.slice(s, e);
    let changed;
    const problem = (why) => problems.push({ value, s, e, kind, changed, why });
    if (kind === "bold" || kind === "italic") {
      const result = edit.toggleEmphasis(value, s, e, kind);
      if (!result) continue;
      changed = apply(value, result);
      const out = await render(changed);
      const tag = kind === "bold" ? "strong" : "em";
      const formatted = [...out.querySelectorAll(tag)].map((el) => el.textContent).join("\\n");
      const lineOfS = value.split("\\n")[value.slice(0, s).split("\\n").length - 1];
      const target = s === e ? lineOfS : selected;
      for (const part of target.split("\\n").map((p) => p.trim()).filter(Boolean)) {
        if (!formatted.includes(part)) problem(`not ${tag}: ${part}`);
      }
      const again = edit.toggleEmphasis(changed, result.selStart, result.selEnd, kind);
      if (s !== e && apply(changed, again) !== value) problem("toggle back");
    } else {
      const result = edit.toggleList(value, s, e, kind === "numbered");
      changed = apply(value, result);
      const out = await render(changed);
      const first = value.slice(0, s).split("\\n").length - 1;
      // A selection that ends where a line starts does not take that line.
      const end = e > s && value[e - 1] === "\\n" ? e - 1 : e;
      const last = value.slice(0, end).split("\\n").length - 1;
      const items = out.querySelectorAll("li").length;
      if (items !== last - first + 1) problem(`${items} items`);
      const back = edit.toggleList(changed, result.selStart, result.selEnd, kind === "numbered");
      if (apply(changed, back) !== value) problem("toggle back");
    }
    const shown = (await render(changed)).textContent;
    if (/[*]/.test(shown)) problem(`markers shown: ${shown}`);
  }
  return problems;
}"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_toolbar_action_leaves_broken_markdown(browsers: Browsers, ats: Ats, seed: int) -> None:
    staff, _ = open_pair(browsers, ats)
    problems = staff.evaluate(RANDOM_EDITS, [seed, 150])
    assert problems == []


def test_on_a_phone_enter_starts_a_new_line_and_send_sends(browsers: Browsers, ats: Ats) -> None:
    """A phone's keyboard has no Shift+Enter: there Enter starts a new line
    (and goes on with a list), the hint says so, and Send sends."""
    staff, candidate = open_pair(browsers, ats, "phone")
    box = staff.get_by_test_id("composer")
    expect(staff.locator("#composer-keys")).to_have_text("Enter starts a new line · Send sends")
    box.press_sequentially("Two things:")
    box.press("Enter")
    box.press_sequentially("- Bring ID")
    box.press("Enter")
    expect(box).to_have_value("Two things:\n- Bring ID\n- ")
    box.press_sequentially("Arrive at 9")
    expect(staff.locator(MESSAGE)).to_have_count(0)
    staff.get_by_test_id("send").click()
    expect(last_message(candidate).locator("p")).to_have_text("Two things:")
    expect(last_message(candidate).locator("li")).to_have_text(["Bring ID", "Arrive at 9"])
    expect(box).to_have_value("")


@pytest.mark.parametrize("size", SIZES)
def test_a_message_over_the_limit_is_kept_whole_and_says_by_how_much(
    browsers: Browsers, ats: Ats, size: str
) -> None:
    """Pasted text over 10,000 characters is not cut: Send waits until it
    is short enough. An emoji is one character, as the server counts."""
    staff, candidate = open_pair(browsers, ats, size)
    box, status = staff.get_by_test_id("composer"), staff.get_by_test_id("composer-status")
    text = "🙂" + "x" * 10_001
    box.fill(text)
    expect(status).to_have_text("2 characters too long: a message has at most 10,000.")
    expect(staff.get_by_test_id("send")).to_be_disabled()
    if size == "desktop":
        box.press("Enter")
        expect(box).to_have_value(text)

    box.press("Backspace")
    expect(status).to_have_text("1 character too long: a message has at most 10,000.")
    box.press("Backspace")
    expect(status).to_be_hidden()
    staff.get_by_test_id("send").click()
    expect(box).to_have_value("")
    expect(last_message(candidate)).to_have_text("🙂" + "x" * 9_999)
