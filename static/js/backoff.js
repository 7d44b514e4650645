// How long socket.js waits before its next connect attempt.
//
// The first retries come quickly (a restarted server is usually back within
// seconds, and people notice a stale page at once): 125-250 ms, then
// doubling. During an outage's first QUICK_PHASE_MS the delay is capped at
// QUICK_MAX_DELAY_MS, so a page finds a server that answers again within
// about 2 s; a longer outage backs off to SLOW_MAX_DELAY_MS. Each delay is
// drawn from [cap/2, cap] ("equal jitter"): tabs spread out instead of all
// hitting a restarted server at one instant, yet none waits longer than the cap.

export const BASE_DELAY_MS = 250;
const QUICK_MAX_DELAY_MS = 2000;
const SLOW_MAX_DELAY_MS = 15000;
const QUICK_PHASE_MS = 2 * 60 * 1000;

/** The delay before connect attempt number `attempt` (0 first) of an
 * outage that began `downForMs` ago. */
export function backoffDelay(attempt, downForMs) {
  const max = downForMs > QUICK_PHASE_MS ? SLOW_MAX_DELAY_MS : QUICK_MAX_DELAY_MS;
  const cap = Math.min(max, BASE_DELAY_MS * 2 ** Math.min(attempt, 16));
  return cap / 2 + Math.random() * (cap / 2);
}

// How long a connect attempt may stay pending before socket.js abandons it
// and tries again. A handshake that has not opened in 5 s usually means a
// crowd of reconnects is queued at the server (a worker died and its
// sockets all came to the survivor): abandoning it after a fixed 5 s only
// adds another handshake to the queue while the server still works on the
// abandoned one (congestion collapse). So each timeout in a row doubles the
// next attempt's: 5 s, 10 s, 20 s, then 30 s; an open starts afresh.
const CONNECT_TIMEOUT_MS = 5000;
const MAX_CONNECT_TIMEOUT_MS = 30000;

/** How long a connect attempt may stay pending after `timeoutsInRow` attempts
 * in a row were abandoned pending (0 after an open). */
export function connectTimeout(timeoutsInRow) {
  return Math.min(MAX_CONNECT_TIMEOUT_MS, CONNECT_TIMEOUT_MS * 2 ** Math.min(timeoutsInRow, 16));
}
