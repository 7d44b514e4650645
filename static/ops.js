// The ops page: polls /ops/data and shows the deployment's numbers. Rates
// and latencies come from what each process counted over its last few
// minutes (`recent`, kept server-side in chatserver/ops/stats.py), not from
// the difference between two polls, so ordinary chat traffic (a message
// now and then) shows instead of 0.0 and "–".

const POLL_MS = 2000;

const $ = (id) => document.getElementById(id);

function sumConnections(connections) {
  return Object.values(connections || {}).reduce((a, b) => a + b, 0);
}

/** "5 min", "40 s": how long a window covers. */
export function formatSpan(seconds) {
  if (seconds >= 90) return `${Math.round(seconds / 60)} min`;
  return `${Math.max(1, Math.round(seconds))} s`;
}

export function formatRate(value) {
  if (value === null || value === undefined) return "–";
  return value.toFixed(value < 10 ? 1 : 0);
}

function formatSeconds(value) {
  return value < 1 ? `${(value * 1000).toFixed(1)} ms` : `${value.toFixed(2)} s`;
}

/** Mean latency over the window, or null without a delivery in it. */
export function meanLatency(recent) {
  return recent && recent.latency_count > 0 ? recent.latency_sum / recent.latency_count : null;
}

/** The bucket bound under which a share `q` of the window's deliveries
 * fell (cumulative buckets, the last one +Inf), or null without one. */
export function percentile(recent, bounds, q) {
  const buckets = recent ? recent.latency_buckets : [];
  const total = buckets[buckets.length - 1];
  if (!(total > 0)) return null;
  const index = buckets.findIndex((n) => n >= q * total);
  return index < bounds.length ? bounds[index] : Infinity;
}

function formatBound(bound, bounds) {
  if (bound === Infinity) return `> ${formatSeconds(bounds[bounds.length - 1])}`;
  return `≤ ${formatSeconds(bound)}`;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function render(data) {
  const totals = data.totals;
  const recent = totals.recent;
  const span = formatSpan(recent.seconds > 0 ? recent.seconds : recent.window_seconds);
  for (const el of document.querySelectorAll("[data-window]")) el.textContent = `last ${span}`;
  $("window-full").textContent = formatSpan(recent.window_seconds);
  $("connections").textContent = String(sumConnections(totals.connections));
  $("send-rate").textContent = formatRate(recent.messages_per_minute);
  $("deliver-rate").textContent = formatRate(recent.frames_per_minute);
  const mean = meanLatency(recent);
  const none = `No messages in the last ${span}`;
  $("latency-mean").textContent = mean === null ? none : formatSeconds(mean);
  const p50 = percentile(recent, data.latency_buckets, 0.5);
  const p95 = percentile(recent, data.latency_buckets, 0.95);
  $("latency-p50").textContent = p50 === null ? none : formatBound(p50, data.latency_buckets);
  $("latency-p95").textContent = p95 === null ? none : formatBound(p95, data.latency_buckets);
  $("notifier-backlog").textContent = totals.notifier_backlog === null ? "–" : String(totals.notifier_backlog);
  $("slow").textContent = String(totals.slow_disconnects);
  $("resyncs").textContent = String(totals.resyncs);

  const rows = data.workers.map((worker) => {
    const own = worker.recent || null;
    const ownMean = meanLatency(own);
    const tr = document.createElement("tr");
    tr.append(
      cell(`${worker.worker}`),
      cell(worker.role),
      cell(String(worker.connections.staff || 0)),
      cell(String(worker.connections.candidate || 0)),
      cell(formatRate(own && own.messages_per_minute)),
      cell(formatRate(own && own.frames_per_minute)),
      cell(ownMean === null ? "no messages" : formatSeconds(ownMean)),
    );
    return tr;
  });
  $("workers").replaceChildren(...rows);
}

async function poll() {
  try {
    const response = await fetch("/ops/data", { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    $("status").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    $("status").classList.remove("error");
  } catch (error) {
    $("status").textContent = `Could not load: ${error.message}`;
    $("status").classList.add("error");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
