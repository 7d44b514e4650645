// The ops page: polls /ops/data and turns the workers' cumulative totals
// into rates and latencies over the last polling interval.

const POLL_MS = 2000;
let previous = null;

const $ = (id) => document.getElementById(id);

function sumConnections(connections) {
  return Object.values(connections || {}).reduce((a, b) => a + b, 0);
}

function rate(now, before, seconds, name) {
  if (!before || seconds <= 0) return null;
  return Math.max(0, (now[name] - before[name]) / seconds);
}

function formatRate(value) {
  return value === null ? "–" : value.toFixed(value < 10 ? 1 : 0);
}

function formatSeconds(value) {
  if (value === null || Number.isNaN(value)) return "–";
  return value < 1 ? `${(value * 1000).toFixed(1)} ms` : `${value.toFixed(2)} s`;
}

// Mean over the interval from the deltas of sum and count.
function meanLatency(now, before) {
  const count = now.latency_count - (before ? before.latency_count : 0);
  const sum = now.latency_sum - (before ? before.latency_sum : 0);
  return count > 0 ? sum / count : null;
}

// The 95th percentile's bucket bound over the interval (cumulative buckets).
function p95Latency(now, before, bounds) {
  const buckets = now.latency_buckets.map((n, i) => n - (before ? before.latency_buckets[i] : 0));
  const total = buckets[buckets.length - 1];
  if (total <= 0) return null;
  const index = buckets.findIndex((n) => n >= 0.95 * total);
  return index < bounds.length ? bounds[index] : Infinity;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function render(data, seconds) {
  const totals = data.totals;
  const before = previous && previous.totals;
  $("connections").textContent = String(sumConnections(totals.connections));
  $("send-rate").textContent = formatRate(rate(totals, before, seconds, "messages_sent"));
  $("deliver-rate").textContent = formatRate(rate(totals, before, seconds, "frames_delivered"));
  $("latency-mean").textContent = formatSeconds(meanLatency(totals, before));
  const p95 = p95Latency(totals, before, data.latency_buckets);
  $("latency-p95").textContent = p95 === Infinity ? "> 5 s" : p95 === null ? "–" : `≤ ${formatSeconds(p95)}`;
  $("notifier-backlog").textContent = totals.notifier_backlog === null ? "–" : String(totals.notifier_backlog);
  $("slow").textContent = String(totals.slow_disconnects);
  $("resyncs").textContent = String(totals.resyncs);

  const earlier = new Map((previous ? previous.workers : []).map((w) => [w.worker, w]));
  const rows = data.workers.map((worker) => {
    const old = earlier.get(worker.worker);
    const tr = document.createElement("tr");
    tr.append(
      cell(`${worker.worker}`),
      cell(worker.role),
      cell(String(worker.connections.staff || 0)),
      cell(String(worker.connections.candidate || 0)),
      cell(formatRate(rate(worker, old, seconds, "messages_sent"))),
      cell(formatRate(rate(worker, old, seconds, "frames_delivered"))),
      cell(formatSeconds(meanLatency(worker, old))),
    );
    return tr;
  });
  $("workers").replaceChildren(...rows);
}

async function poll() {
  const started = performance.now();
  try {
    const response = await fetch("/ops/data", { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    const seconds = previous ? (started - previous.at) / 1000 : 0;
    render(data, seconds);
    previous = { ...data, at: started };
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
