// The messages sent but not yet acknowledged, for the tab's one socket
// (socket.js owns this and reaches it as `connection.sends`).
//
// Pending sends live here and only here, keyed by client_id, from the send
// until its ack (or until a refused one is discarded): a conversation's
// view asks for them and hears about each by client_id. A view attaches as
// it opens, before its history has loaded and it subscribes, because its
// composer takes sends from the start: an ack that found no view would
// leave the bubble of a message already stored (settled sends are gone).
//
// Every send is re-sent with its original client_id until its ack (so a
// retry never makes a second message): again on the same socket when the
// ack is late, on each new socket, and over HTTP when the socket stays
// down, which is idempotent by client_id in the same way.
//
// Every pending send is also kept by local-store.js until its ack, so a
// send whose page was reloaded or closed before the ack came goes again,
// with its client_id, from the next page the person opens: it is stored
// once, whether or not its first attempt was.

import { api, ApiError } from "./api.js";
import { BASE_DELAY_MS } from "./backoff.js";
import { KEPT_MS, drop, keep, keyOf, keysOf, load } from "./local-store.js";

// An unacknowledged send is re-sent on the same socket after this long.
const ACK_TIMEOUT_MS = 8000;
// While the socket is down, pending sends older than this go over HTTP.
const HTTP_FALLBACK_AFTER_MS = 4000;
const RETRYABLE = new Set(["unavailable", "rate_limited"]);
// A send kept from a closed page goes again by itself if it is younger than
// this; an older one comes back refused, for the person to retry or discard
// (a message written yesterday should not arrive unannounced today).
const RESEND_KEPT_WITHIN_MS = 60 * 60 * 1000;
const NOT_SENT = { code: "not_sent", text: "the page was closed before it went." };

/** A client_id (SPEC 3): a random UUID, also where randomUUID is missing
 * (pages served over plain HTTP on a LAN address). */
function uuid4() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Whether `kept` (read back from storage, written by any version of this
 * page or by hand) has the shape `PendingSends.keep` writes. */
function isKeptSend(kept) {
  const text = (v) => typeof v === "string";
  const file = (f) => f !== null && typeof f === "object" && text(f.id) && text(f.name);
  const failed = (f) => f === null || f === undefined || (typeof f === "object" && text(f.code) && text(f.text));
  return kept !== null && typeof kept === "object" && text(kept.clientId) && text(kept.conversation)
    && text(kept.body) && Array.isArray(kept.files) && kept.files.every(file)
    && Number.isFinite(kept.createdAt) && failed(kept.failed);
}

export class PendingSends {
  /** `link` is what the sends need of the connection: `send(frame)` (false
   * while the socket is down), `isOpen()`, `downSince()` (when the socket
   * last went down) and `room(conversation)` (the view that hears the
   * conversation's acks and refusals, if one is attached). */
  constructor(link) {
    this.link = link;
    this.entries = new Map();
  }

  /** How many sends are held (refused ones included). */
  get size() {
    return this.entries.size;
  }

  /** Send a message until it is acknowledged; returns its client_id. The
   * conversation's room hears `onAck(clientId, message)` or, when it is
   * refused, `onSendError(clientId, code, text)`; a refused send stays
   * (marked `failed`) until `retry` or `discard`. `files` are the
   * uploaded attachments ({id, name, size}). */
  add(conversation, body, files) {
    const entry = this.entry(uuid4(), conversation, body, files, Date.now(), null);
    this.entries.set(entry.clientId, entry);
    this.keep(entry);
    this.transmit(entry);
    return entry.clientId;
  }

  entry(clientId, conversation, body, files, createdAt, failed) {
    const attachments = files.map((f) => f.id);
    return {
      clientId,
      conversation,
      body,
      files,
      frame: { type: "send", conversation, client_id: clientId, body, attachments },
      createdAt,
      sentAt: 0,
      notBefore: 0,
      viaHttp: false,
      failed,
    };
  }

  /** Take back the sends kept by earlier pages of this person (before the
   * first socket opens: they go on it). */
  restore() {
    const now = Date.now();
    for (const key of keysOf("outbox")) {
      const kept = load(key);
      if (!isKeptSend(kept) || !(now - kept.createdAt < KEPT_MS)) {
        drop(key);
        continue;
      }
      if (this.entries.has(kept.clientId)) continue;
      const stale = !kept.failed && !(now - kept.createdAt < RESEND_KEPT_WITHIN_MS);
      const failed = stale ? NOT_SENT : kept.failed || null;
      const entry = this.entry(kept.clientId, kept.conversation, kept.body, kept.files, kept.createdAt, failed);
      this.entries.set(entry.clientId, entry);
      if (stale) this.keep(entry);
    }
  }

  keep(entry) {
    const { clientId, conversation, body, files, createdAt, failed } = entry;
    keep(keyOf("outbox", clientId), { clientId, conversation, body, files, createdAt, failed });
  }

  /** The conversation's sends not yet acknowledged, oldest first. */
  of(conversation) {
    return [...this.entries.values()].filter((e) => e.conversation === conversation);
  }

  /** Whether a send of the conversation is on its way (not refused). */
  hasInFlight(conversation) {
    return this.of(conversation).some((e) => !e.failed);
  }

  retry(clientId) {
    const entry = this.entries.get(clientId);
    if (!entry || !entry.failed) return;
    Object.assign(entry, { failed: null, createdAt: Date.now(), sentAt: 0, notBefore: 0 });
    this.keep(entry);
    this.transmit(entry);
  }

  /** Forget a refused send; returns its text (null if there was none). */
  discard(clientId) {
    const entry = this.entries.get(clientId);
    if (!entry?.failed) return null;
    this.entries.delete(clientId);
    drop(keyOf("outbox", clientId));
    return entry.body;
  }

  /** A new socket opened: every send goes again on it. */
  transmitAll() {
    for (const entry of this.entries.values()) this.transmit(entry);
  }

  transmit(entry) {
    if (entry.failed || Date.now() < entry.notBefore) return;
    if (this.link.send(entry.frame)) entry.sentAt = Date.now();
  }

  /** The ack for `clientId` (over the socket or HTTP): the send is done. */
  settle(clientId, message) {
    const entry = this.entries.get(clientId);
    if (!entry) return;
    this.entries.delete(clientId);
    drop(keyOf("outbox", clientId));
    this.link.room(entry.conversation)?.onAck(clientId, message);
  }

  /** A refusal: a retryable one waits and goes again, any other marks the
   * send failed until the person retries or discards it. */
  fail(clientId, code, text, retryAfterMs) {
    const entry = this.entries.get(clientId);
    if (!entry || entry.failed) return;
    if (RETRYABLE.has(code)) {
      entry.notBefore = Date.now() + (retryAfterMs || BASE_DELAY_MS * 4);
      entry.sentAt = 0;
      return;
    }
    entry.failed = { code, text };
    this.keep(entry);
    this.link.room(entry.conversation)?.onSendError(clientId, code, text);
  }

  async sendOverHttp(clientId, entry) {
    entry.viaHttp = true;
    const { conversation, body, attachments } = entry.frame;
    try {
      const message = await api.post(`/api/conversations/${encodeURIComponent(conversation)}/messages`, {
        client_id: clientId, body, attachments,
      });
      this.settle(clientId, message);
    } catch (err) {
      if (err instanceof ApiError && err.status !== 0) {
        this.fail(clientId, err.code, err.message, err.retryAfterMs);
      }
    } finally {
      entry.viaHttp = false;
    }
  }

  /** The connection's periodic tick: re-send what waits too long for its
   * ack, or, while the socket is down, send it over HTTP. */
  tick(now) {
    for (const [clientId, entry] of this.entries) {
      if (entry.failed || now < entry.notBefore) continue;
      if (this.link.isOpen()) {
        if (!entry.sentAt || now - entry.sentAt > ACK_TIMEOUT_MS) this.transmit(entry);
      } else if (!entry.viaHttp && now - Math.max(entry.createdAt, this.link.downSince()) > HTTP_FALLBACK_AFTER_MS) {
        this.sendOverHttp(clientId, entry);
      }
    }
  }
}
