// Settings (SPEC 6): timezone from a searchable IANA list and email
// notifications, each saved as soon as it changes. The search finds zones
// by IANA name, city, country or common name ("India", "Pacific time");
// Enter saves only the highlighted best match.

import { api } from "./api.js";
import { adoptBrowserZone } from "./time.js";

// What people type for a zone that its IANA name does not say: countries
// and common names, each to its zones (the first is the likeliest). The
// browser adds each zone's own generic name ("India Standard Time").
const ALIASES = {
  "india": ["Asia/Kolkata"],
  "germany": ["Europe/Berlin"],
  "uk": ["Europe/London"],
  "united kingdom": ["Europe/London"],
  "great britain": ["Europe/London"],
  "britain": ["Europe/London"],
  "england": ["Europe/London"],
  "scotland": ["Europe/London"],
  "wales": ["Europe/London"],
  "northern ireland": ["Europe/London"],
  "ireland": ["Europe/Dublin"],
  "france": ["Europe/Paris"],
  "spain": ["Europe/Madrid", "Atlantic/Canary"],
  "portugal": ["Europe/Lisbon"],
  "italy": ["Europe/Rome"],
  "netherlands": ["Europe/Amsterdam"],
  "holland": ["Europe/Amsterdam"],
  "belgium": ["Europe/Brussels"],
  "switzerland": ["Europe/Zurich"],
  "austria": ["Europe/Vienna"],
  "poland": ["Europe/Warsaw"],
  "czechia": ["Europe/Prague"],
  "czech republic": ["Europe/Prague"],
  "hungary": ["Europe/Budapest"],
  "romania": ["Europe/Bucharest"],
  "greece": ["Europe/Athens"],
  "sweden": ["Europe/Stockholm"],
  "norway": ["Europe/Oslo"],
  "denmark": ["Europe/Copenhagen"],
  "finland": ["Europe/Helsinki"],
  "ukraine": ["Europe/Kyiv", "Europe/Kiev"],
  "russia": ["Europe/Moscow"],
  "turkey": ["Europe/Istanbul"],
  "israel": ["Asia/Jerusalem"],
  "uae": ["Asia/Dubai"],
  "united arab emirates": ["Asia/Dubai"],
  "saudi arabia": ["Asia/Riyadh"],
  "pakistan": ["Asia/Karachi"],
  "bangladesh": ["Asia/Dhaka"],
  "sri lanka": ["Asia/Colombo"],
  "nepal": ["Asia/Kathmandu"],
  "china": ["Asia/Shanghai"],
  "hong kong": ["Asia/Hong_Kong"],
  "taiwan": ["Asia/Taipei"],
  "japan": ["Asia/Tokyo"],
  "korea": ["Asia/Seoul"],
  "south korea": ["Asia/Seoul"],
  "singapore": ["Asia/Singapore"],
  "malaysia": ["Asia/Kuala_Lumpur"],
  "thailand": ["Asia/Bangkok"],
  "vietnam": ["Asia/Ho_Chi_Minh"],
  "philippines": ["Asia/Manila"],
  "indonesia": ["Asia/Jakarta"],
  "australia": ["Australia/Sydney", "Australia/Melbourne", "Australia/Brisbane", "Australia/Adelaide", "Australia/Perth"],
  "new zealand": ["Pacific/Auckland"],
  "usa": ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu"],
  "us": ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu"],
  "united states": ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu"],
  "america": ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"],
  "canada": ["America/Toronto", "America/Vancouver", "America/Edmonton", "America/Winnipeg", "America/Halifax"],
  "mexico": ["America/Mexico_City"],
  "brazil": ["America/Sao_Paulo"],
  "argentina": ["America/Argentina/Buenos_Aires"],
  "chile": ["America/Santiago"],
  "colombia": ["America/Bogota"],
  "peru": ["America/Lima"],
  "south africa": ["Africa/Johannesburg"],
  "nigeria": ["Africa/Lagos"],
  "kenya": ["Africa/Nairobi"],
  "egypt": ["Africa/Cairo"],
  "morocco": ["Africa/Casablanca"],
  "ghana": ["Africa/Accra"],
  "eastern time": ["America/New_York"],
  "central time": ["America/Chicago"],
  "mountain time": ["America/Denver"],
  "pacific time": ["America/Los_Angeles"],
  "alaska": ["America/Anchorage"],
  "hawaii": ["Pacific/Honolulu"],
  "est": ["America/New_York"],
  "cst": ["America/Chicago"],
  "mst": ["America/Denver"],
  "pst": ["America/Los_Angeles"],
  "ist": ["Asia/Kolkata"],
  "jst": ["Asia/Tokyo"],
  "cet": ["Europe/Berlin", "Europe/Paris"],
  "aest": ["Australia/Sydney"],
};
// The IANA regions where the zones people live in are (not the old
// aliases such as US/Pacific or PST8PDT, which come after them).
const REGIONS = /^(Africa|America|Antarctica|Asia|Atlantic|Australia|Europe|Indian|Pacific)\//;

function normalise(text) {
  return text.toLowerCase().replace(/[_/,.()-]+/g, " ").replace(/\s+/g, " ").trim();
}

function genericName(zoneName, style) {
  try {
    const parts = new Intl.DateTimeFormat("en-US", { timeZone: zoneName, timeZoneName: style }).formatToParts(new Date());
    const name = parts.find((p) => p.type === "timeZoneName")?.value || "";
    return /^GMT[+-]|^UTC[+-]/.test(name) ? "" : name;
  } catch {
    return "";
  }
}

/** Each option with what it can be found by: its IANA name, its city,
 * the browser's names for it ("Pacific Time", "India Standard Time") and
 * the countries and common names of ALIASES. */
function searchIndex(options) {
  const aliases = new Map();
  for (const [alias, zones] of Object.entries(ALIASES)) {
    zones.forEach((name, rank) => {
      if (!aliases.has(name)) aliases.set(name, []);
      aliases.get(name).push([alias, rank]);
    });
  }
  return options.map((option, position) => {
    const value = option.value;
    const longGeneric = genericName(value, "longGeneric");
    const long = genericName(value, "long");
    const generic = longGeneric || long;
    const names = [normalise(value), normalise(value.split("/").pop())];
    for (const name of [longGeneric, long]) if (name) names.push(normalise(name));
    return {
      option,
      generic,
      aliases: aliases.get(value) || [],
      names,
      words: names.join(" ").split(" "),
      order: (REGIONS.test(value) ? 0 : 100000) + position,
    };
  });
}

/** How well an option matches (lower is better), or null: a country or
 * common name, then the zone's name or city, then a name starting with the
 * query, then every word starting a word, then every word anywhere. */
function scoreOf(entry, query) {
  const alias = entry.aliases.find(([name]) => name === query);
  if (alias) return alias[1];
  if (entry.names.includes(query)) return 10;
  if (entry.names.some((n) => n.startsWith(query)) || entry.aliases.some(([n]) => n.startsWith(query))) return 20;
  const words = query.split(" ");
  const aliasWords = entry.aliases.flatMap(([n]) => n.split(" "));
  if (words.every((w) => entry.words.some((x) => x.startsWith(w)) || aliasWords.some((x) => x.startsWith(w)))) return 30;
  const text = `${entry.names.join(" ")} ${entry.aliases.map(([n]) => n).join(" ")}`;
  if (words.every((w) => text.includes(w))) return 40;
  return null;
}

// How long a choice moved by the keyboard must rest before it is saved.
const REST_MS = 700;
// Keys that move a list's or a select's choice one option at a time.
const STEPS = new Set(["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"]);

/** Saves `select`'s choice (`store()`) as soon as it changes, except while
 * the keyboard steps through the options: every option passed is a
 * change, and saving each one sent a request per key and left zones
 * saved on the way. Such a choice is saved once it rests, or at once on
 * Enter, on leaving the list, or as the page goes. `now()` saves at once.
 * `store({ leaving })` saves; `leaving`: the page is going. */
function saveOnRest(select, store) {
  let stepping = false;
  let timer = null;
  const now = ({ leaving = false } = {}) => {
    clearTimeout(timer);
    timer = null;
    store({ leaving });
  };
  const flush = ({ leaving = false } = {}) => {
    if (timer !== null) now({ leaving });
  };
  select.addEventListener("keydown", (event) => {
    stepping = STEPS.has(event.key) || event.key.length === 1;
    if (event.key === "Enter") flush();
  });
  select.addEventListener("change", () => {
    if (!stepping) {
      now();
      return;
    }
    clearTimeout(timer);
    timer = setTimeout(now, REST_MS);
  });
  select.addEventListener("pointerdown", () => {
    stepping = false;
  });
  select.addEventListener("blur", () => flush());
  // A save as the page goes must outlive it: a keepalive request.
  window.addEventListener("pagehide", () => flush({ leaving: true }));
  return { now: () => now() };
}

export function initSettings() {
  const zone = document.getElementById("timezone");
  const search = document.getElementById("tz-search");
  const notifications = document.getElementById("notifications");
  const status = document.getElementById("save-status");
  const browserHint = document.getElementById("tz-browser");
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const options = [...zone.options];

  async function save(change, label, { leaving = false } = {}) {
    status.classList.remove("error");
    status.textContent = "Saving…";
    try {
      const updated = await api.put("/api/me/settings", change, { keepalive: leaving });
      document.body.dataset.timezone = updated.timezone;
      savedZone = updated.timezone;
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

  // The zone shown as saved: the one the search's highlight returns to.
  let savedZone = zone.value;
  let index = null;

  function runSearch() {
    index = index || searchIndex(options);
    const query = normalise(search.value);
    status.classList.remove("error");
    if (!query) {
      zone.replaceChildren(...options);
      for (const option of options) option.hidden = false;
      zone.value = savedZone;
      status.textContent = "";
      zone.selectedOptions[0]?.scrollIntoView({ block: "nearest" });
      return;
    }
    const ranked = [];
    for (const entry of index) {
      const score = scoreOf(entry, query);
      entry.option.hidden = score === null;
      if (score !== null) ranked.push([score, entry]);
    }
    ranked.sort((a, b) => a[0] - b[0] || a[1].order - b[1].order);
    const shown = ranked.map(([, entry]) => entry.option);
    zone.replaceChildren(...shown, ...options.filter((o) => o.hidden));
    const best = shown[0];
    if (!best) {
      zone.value = savedZone;
      status.textContent = `No time zone matches “${search.value.trim()}”.`;
      return;
    }
    // The best match is highlighted where it can be seen; Enter saves it.
    zone.value = best.value;
    best.scrollIntoView({ block: "nearest" });
    window.scrollTo(0, 0);
    const entry = ranked[0][1];
    const name = entry.generic ? ` (${entry.generic})` : "";
    status.textContent = best.value === savedZone
      ? `${best.textContent}${name} is your timezone.`
      : `Press Enter to choose ${best.textContent}${name}.`;
  }

  search.addEventListener("input", runSearch);
  search.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      zone.focus();
    } else if (event.key === "Enter") {
      event.preventDefault();
      // Only the highlighted match, which the list and the status show.
      const chosen = zone.selectedOptions[0];
      if (normalise(search.value) && chosen && !chosen.hidden && chosen.value !== savedZone) {
        zoneSaver.now();
      }
    }
  });
  // Leaving the search for anything but the list keeps the saved zone shown.
  search.addEventListener("blur", (event) => {
    if (event.relatedTarget !== zone && zone.value !== savedZone) zone.value = savedZone;
  });
  const zoneSaver = saveOnRest(zone, (how) => save({ timezone: zone.value }, "Timezone", how));
  saveOnRest(notifications, (how) => save({ email_notifications: notifications.value }, "Email notifications", how));
  document.getElementById("tz-use-browser").addEventListener("click", () => {
    zone.value = browserZone;
    zoneSaver.now();
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
  // Likewise a search typed (or restored by Back) before the listener.
  if (search.value) runSearch();
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
    savedZone = adopted.value;
    adopted.scrollIntoView({ block: "nearest" });
    window.scrollTo(0, 0);
    status.classList.remove("error");
    status.textContent = `Timezone set to your browser's: ${adopted.textContent}.`;
    showBrowserHint();
  });
}
