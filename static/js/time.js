// Times on the wire are UTC; people see them in the timezone of their
// settings (not necessarily the browser's), via Intl with an explicit zone.

const locale = navigator.language || "en-GB";
let zone = document.body.dataset.timezone || "UTC";
const cache = new Map();

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
