// Settings (SPEC 6): timezone from a searchable IANA list and email
// notifications, each saved as soon as it changes.

import { api } from "./api.js";
import { adoptBrowserZone } from "./time.js";

export function initSettings() {
  const zone = document.getElementById("timezone");
  const search = document.getElementById("tz-search");
  const notifications = document.getElementById("notifications");
  const status = document.getElementById("save-status");
  const browserHint = document.getElementById("tz-browser");
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const options = [...zone.options];

  async function save(change, label) {
    status.classList.remove("error");
    status.textContent = "Saving…";
    try {
      const updated = await api.put("/api/me/settings", change);
      document.body.dataset.timezone = updated.timezone;
      status.textContent = `${label} saved.`;
    } catch (err) {
      status.classList.add("error");
      status.textContent = `Not saved: ${err.message}`;
    }
    showBrowserHint();
  }

  function showBrowserHint() {
    const known = options.some((o) => o.value === browserZone);
    browserHint.hidden = !known || zone.value === browserZone;
    browserHint.querySelector('[data-field="browser-tz"]').textContent = (browserZone || "").replace(/_/g, " ");
  }

  search.addEventListener("input", () => {
    const words = search.value.toLowerCase().replace(/_/g, " ").split(/\s+/).filter(Boolean);
    let first = null;
    for (const option of options) {
      const text = option.value.toLowerCase().replace(/_/g, " ");
      const match = words.every((w) => text.includes(w));
      option.hidden = !match;
      if (match && !first) first = option;
    }
    if (first && zone.selectedOptions[0]?.hidden) first.scrollIntoView({ block: "nearest" });
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      zone.focus();
    } else if (event.key === "Enter") {
      event.preventDefault();
      const first = options.find((o) => !o.hidden);
      if (first) {
        zone.value = first.value;
        zone.dispatchEvent(new Event("change"));
      }
    }
  });
  zone.addEventListener("change", () => save({ timezone: zone.value }, "Timezone"));
  notifications.addEventListener("change", () => save({ email_notifications: notifications.value }, "Email notifications"));
  document.getElementById("tz-use-browser").addEventListener("click", () => {
    zone.value = browserZone;
    zone.dispatchEvent(new Event("change"));
  });
  // A choice made before this script ran (the page is usable while its
  // modules load) is saved now rather than silently lost: the options
  // the server rendered as selected are what is saved.
  for (const select of [zone, notifications]) {
    const rendered = [...select.options].find((o) => o.defaultSelected);
    if (rendered && select.value !== rendered.value) select.dispatchEvent(new Event("change"));
  }
  zone.selectedOptions[0]?.scrollIntoView({ block: "center" });
  window.scrollTo(0, 0);
  showBrowserHint();
  // A candidate who never chose: the browser's zone, saved as theirs as the
  // page loaded (main.js), is what the list shows, unless a choice was made.
  const rendered = zone.value;
  adoptBrowserZone().then((me) => {
    if (!me || me.timezone_chosen || zone.value !== rendered) return;
    const adopted = options.find((o) => o.value === me.timezone);
    if (!adopted || adopted.value === rendered) return;
    for (const o of options) o.defaultSelected = o === adopted;
    zone.value = adopted.value;
    adopted.scrollIntoView({ block: "nearest" });
    window.scrollTo(0, 0);
    status.classList.remove("error");
    status.textContent = `Timezone set to your browser's: ${adopted.textContent}.`;
    showBrowserHint();
  });
}
