// Times on the wire are UTC; people see them in the timezone of their
// settings (not necessarily the browser's), via Intl with an explicit zone.
// A candidate who never chose a zone gets their browser's: shown at once
// and saved (adoptBrowserZone), so that their emails use it too.

import { api } from "./api.js";

const locale = navigator.language || "en-GB";
const data = document.body.dataset;
const cache = new Map();
// Plain UTC however it is spelt ("Etc/UTC" is "UTC").
const UTC_NAMES = new Set(["UTC", "UCT", "Universal", "Zulu", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich"]);

/** The zone this browser is set to, or "" when it reports none. */
export function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    return "";
  }
}

/** Whether two zone names are one clock: equal, or both plain UTC. */
export function sameZone(a, b) {
  const plain = (name) => UTC_NAMES.has(String(name).replace(/^Etc\//, ""));
  return a === b || (plain(a) && plain(b));
}

function knownZone(name) {
  if (!name || name === "Etc/Unknown") return false;
  try {
    new Intl.DateTimeFormat("en", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** The browser's zone where this page should adopt it: a candidate's
 * page, no zone of their own choosing, a zone the browser knows that is not
 * the stored one under any name. Else null. */
function zoneToAdopt() {
  const browser = browserZone();
  if (data.kind !== "candidate" || data.timezoneChosen !== "false") return null;
  if (!knownZone(browser) || sameZone(browser, data.timezone)) return null;
  return browser;
}

let zone = zoneToAdopt() || data.timezone || "UTC";
let adopting = null;

/** Saves the browser's zone as the candidate's (see zoneToAdopt), once per
 * page load at most; resolves to the updated /api/me, or null when nothing
 * was asked or it failed (the page keeps showing the browser's clock). */
export function adoptBrowserZone() {
  if (adopting) return adopting;
  const browser = zoneToAdopt();
  adopting = !browser
    ? Promise.resolve(null)
    : api.post("/api/me/browser-timezone", { timezone: browser }).then(
        (me) => {
          data.timezone = me.timezone;
          data.timezoneChosen = String(me.timezone_chosen);
          setZone(me.timezone);
          return me;
        },
        () => null,
      );
  return adopting;
}

function formatter(options) {
  const key = JSON.stringify(options) + zone;
  if (!cache.has(key)) cache.set(key, new Intl.DateTimeFormat(locale, { timeZone: zone, ...options }));
  return cache.get(key);
}

export function setZone(name) {
  zone = name;
  cache.clear();
}

/** The calendar day of an instant in the viewer's zone, as "YYYY-MM-DD". */
export function dayKey(date) {
  const parts = formatter({ year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(date);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

/** The time of day as the person's locale writes it ("21:05", "9:05 PM":
 * its short time style, which pads hours only where the locale does). */
export function clock(date) {
  return formatter({ timeStyle: "short" }).format(date);
}

export function dayLabel(date, now = new Date()) {
  const key = dayKey(date);
  if (key === dayKey(now)) return "Today";
  if (key === dayKey(new Date(now.getTime() - 86400000))) return "Yesterday";
  const sameYear = key.slice(0, 4) === dayKey(now).slice(0, 4);
  return formatter({ weekday: "long", day: "numeric", month: "long", year: sameYear ? undefined : "numeric" }).format(date);
}

/** Compact time for lists: a clock today, a weekday this week, else a date. */
export function shortTime(date, now = new Date()) {
  if (dayKey(date) === dayKey(now)) return clock(date);
  const age = now.getTime() - date.getTime();
  if (age < 6 * 86400000 && age > 0) return formatter({ weekday: "short" }).format(date);
  return formatter({ day: "numeric", month: "short" }).format(date);
}

export function fullTime(date) {
  return formatter({ dateStyle: "full", timeStyle: "short" }).format(date);
}
