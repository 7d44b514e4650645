// Entry point of every signed-in page: one socket for the tab, the shared
// chrome (connection banner, bell, account menu) and the page's own view.

import { connection, SIGNED_OUT_TEXT } from "./socket.js";
import { initBell } from "./bell.js";
import { forgetAll } from "./local-store.js";
import { bindMenu } from "./ui.js";
import { adoptBrowserZone } from "./time.js";

const page = document.body.dataset.page;
// A short outage (a server restart) should not flash a banner.
const BANNER_DELAY_MS = 1200;

function initBanner() {
  const banner = document.getElementById("conn-banner");
  const text = document.getElementById("conn-text");
  const retry = document.getElementById("conn-retry");
  let timer = null;
  retry.addEventListener("click", () => connection.reconnectNow());
  function render(state) {
    const offline = navigator.onLine === false;
    banner.classList.toggle("offline", offline || state === "signed-out");
    retry.hidden = state === "signed-out";
    if (state === "signed-out") text.textContent = SIGNED_OUT_TEXT;
    else if (offline) text.textContent = "You're offline. Messages will be sent when you're back online.";
    else text.textContent = "Connection lost. Reconnecting…";
  }
  connection.on("state", (state) => {
    if (state === "open") {
      clearTimeout(timer);
      timer = null;
      banner.hidden = true;
      return;
    }
    render(state);
    if (state === "signed-out" || navigator.onLine === false) banner.hidden = false;
    else if (banner.hidden && !timer) {
      timer = setTimeout(() => {
        timer = null;
        if (!connection.isOpen()) banner.hidden = false;
      }, BANNER_DELAY_MS);
    }
  });
}

function initAccountMenu() {
  const button = document.getElementById("user-button");
  if (!button) return;
  const menu = document.getElementById("user-menu");
  bindMenu(button, menu);
  // The next person at this browser must not find what was being written.
  menu.querySelector('form[action="/auth/sign-out"]')?.addEventListener("submit", () => forgetAll());
}

async function initPage() {
  if (page === "inbox") {
    const { Inbox } = await import("./inbox.js");
    new Inbox().start();
  } else if (page === "candidate" || page === "tab") {
    const { ConversationView } = await import("./conversation.js");
    const pane = document.getElementById("conversation-pane");
    new ConversationView(pane, JSON.parse(pane.dataset.summary)).mount();
  } else if (page === "settings") {
    const { initSettings } = await import("./settings.js");
    initSettings();
  }
}

/** Settings' "Back to messages" returns to the conversation that was open:
 * a Settings link carries this page (with its filters) as `?back=` when it is
 * followed, and the server renders the Back link from it. */
function initSettingsLinks() {
  if (!["inbox", "candidate", "tab"].includes(page)) return;
  document.addEventListener("click", (event) => {
    const link = event.target.closest('a[href^="/settings"]');
    if (!link) return;
    const back = new URLSearchParams({ back: location.pathname + location.search });
    link.setAttribute("href", `/settings?${back}`);
  }, true);
}

// A candidate who never chose a zone: their browser's is saved as theirs.
adoptBrowserZone();
initBanner();
initSettingsLinks();
initAccountMenu();
initBell();
connection.start();
initPage();
