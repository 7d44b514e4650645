// One WebSocket per tab (SPEC 5), shared by every view on the page.
//
// It reconnects by itself with jittered exponential backoff (backoff.js), then
// resubscribes each conversation with `after` = the last seq the view holds
// (so the server replays exactly what was missed) and re-sends every
// unacknowledged message with its original client_id (so a retry never makes
// a second message). When the socket stays down, pending sends also go over
// HTTP, which is idempotent by client_id in the same way.
//
// The pending sends are held by pending-sends.js (`connection.sends`): this
// module hands it the acks and refusals that name a client_id, tells it
// when a socket opens, ticks it, and tells it which view hears a
// conversation's acks (the attached room).

import { api, ApiError } from "./api.js";
import { backoffDelay, connectTimeout } from "./backoff.js";
import { PendingSends } from "./pending-sends.js";

// What a page says once the session has ended (state "signed-out").
export const SIGNED_OUT_TEXT = "Your session has ended. Open your link again to continue.";
// While connects keep failing, ask at most this often whether the session
// ended (a 401 means stop retrying and say so).
const SESSION_CHECK_EVERY_MS = 10000;
// A connection that lived this long was healthy: the next failure starts
// the backoff afresh.
const STABLE_AFTER_MS = 5000;
// Application-level heartbeat: a silent socket for this long is presumed
// dead even if the browser has not noticed (sleeping laptop, lost Wi-Fi).
const PING_EVERY_MS = 25000;
const PONG_TIMEOUT_MS = 10000;
const TICK_MS = 1000;
// After this many failed connects in a row, check whether the session ended.
const AUTH_CHECK_AFTER = 3;

export class Connection {
  constructor() {
    this.ws = null;
    this.attempt = 0;
    this.failuresInRow = 0;
    this.reconnectTimer = null;
    // Conversation -> its open view, which hears the acks of its sends.
    this.rooms = new Map();
    // The conversations whose frames are wanted (subscribed on every connect).
    this.subscribed = new Set();
    this.inboxHandler = null;
    this.listeners = new Map();
    this.sends = new PendingSends({
      send: (frame) => this.send(frame),
      isOpen: () => this.isOpen(),
      downSince: () => this.downSince,
      room: (conversation) => this.rooms.get(conversation),
    });
    this.state = "idle";
    this.stopped = false;
    this.lastFrameAt = 0;
    this.pingSentAt = 0;
    this.downSince = Date.now();
    this.connectTimer = null;
    // Connect attempts abandoned pending in a row: each doubles the next
    // one's timeout (backoff.js `connectTimeout`); an open resets it.
    this.timeoutsInRow = 0;
    this.lastSessionCheck = 0;
  }

  start() {
    this.sends.restore();
    this.connect();
    setInterval(() => this.tick(), TICK_MS);
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.drop());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && !this.isOpen()) this.reconnectNow();
    });
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }

  emit(type, value) {
    for (const fn of this.listeners.get(type) || []) fn(value);
  }

  isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  setState(state) {
    if (state !== "open" && this.state === "open") this.downSince = Date.now();
    this.state = state;
    this.emit("state", state);
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let ws;
    try {
      ws = new WebSocket(`${scheme}${location.host}/ws`);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.setState("connecting");
    let openedAt = 0;
    clearTimeout(this.connectTimer);
    // A connect attempt that neither opens nor fails in this long is
    // abandoned (a half-open network can leave it pending for minutes).
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && ws.readyState === WebSocket.CONNECTING) {
        this.timeoutsInRow += 1;
        this.abandon(ws);
      }
    }, connectTimeout(this.timeoutsInRow));
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      clearTimeout(this.connectTimer);
      this.timeoutsInRow = 0;
      openedAt = Date.now();
      this.lastFrameAt = openedAt;
      this.pingSentAt = 0;
      this.failuresInRow = 0;
      this.setState("open");
      this.resubscribe();
    });
    ws.addEventListener("message", (event) => {
      if (this.ws !== ws) return;
      this.lastFrameAt = Date.now();
      this.pingSentAt = 0;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.dispatch(frame);
    });
    ws.addEventListener("close", () => {
      if (this.ws !== ws) return;
      clearTimeout(this.connectTimer);
      this.ws = null;
      if (openedAt && Date.now() - openedAt > STABLE_AFTER_MS) this.attempt = 0;
      if (!openedAt) this.failuresInRow += 1;
      this.setState(this.stopped ? "signed-out" : "reconnecting");
      this.scheduleReconnect();
    });
  }

  /** The delay before the next connect attempt. */
  backoffDelay() {
    return backoffDelay(this.attempt, Date.now() - this.downSince);
  }

  scheduleReconnect() {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    const delay = this.backoffDelay();
    this.attempt += 1;
    this.nextAttemptAt = Date.now() + delay;
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
    const now = Date.now();
    if (this.failuresInRow >= AUTH_CHECK_AFTER && now - this.lastSessionCheck > SESSION_CHECK_EVERY_MS) {
      this.lastSessionCheck = now;
      this.checkSession();
    }
  }

  /** Give up on a connect attempt that hangs, and go on as if it failed. */
  abandon(ws) {
    this.ws = null;
    ws.close();
    this.failuresInRow += 1;
    this.setState("reconnecting");
    this.scheduleReconnect();
  }

  /** Reconnect at once: the network came back, the tab came into view, or
   * the person asked. A pending attempt is abandoned rather than awaited,
   * since it may have been started on the network that just went away. */
  reconnectNow() {
    if (this.stopped || this.isOpen()) return;
    this.attempt = 0;
    if (this.ws) {
      const stale = this.ws;
      this.ws = null;
      stale.close();
    }
    this.connect();
  }

  /** Give up on the socket as if the network failed: the heartbeat found
   * it silent, or the browser went offline. Its closing handshake may
   * never complete, so nothing waits for its "close" event. */
  drop() {
    const ws = this.ws;
    if (!ws) {
      this.emit("state", this.state);
      return;
    }
    this.ws = null;
    clearTimeout(this.connectTimer);
    ws.close();
    this.setState("reconnecting");
    this.scheduleReconnect();
  }

  async checkSession() {
    try {
      await api.get("/api/me");
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) this.stop();
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    if (this.ws) this.ws.close();
    this.setState("signed-out");
  }

  send(frame) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  resubscribe() {
    if (this.inboxHandler) this.send({ type: "inbox" });
    for (const conversation of this.subscribed) {
      this.send({ type: "subscribe", conversation, after: this.rooms.get(conversation).after() });
    }
    this.sends.transmitAll();
  }

  // -- rooms ---------------------------------------------------------------

  /** ROOM hears the acks and refusals of the conversation's sends from now
   * on, before it subscribes (it may still be loading its history). */
  attach(conversation, room) {
    this.rooms.set(conversation, room);
  }

  /** ROOM (attached or not) also hears the conversation's frames, from the
   * seq after `room.after()`. */
  join(conversation, room) {
    this.attach(conversation, room);
    this.subscribed.add(conversation);
    this.send({ type: "subscribe", conversation, after: room.after() });
  }

  /** ROOM closed; a newer view of the same conversation stays attached. */
  leave(conversation, room) {
    if (this.rooms.get(conversation) !== room) return;
    this.rooms.delete(conversation);
    if (this.subscribed.delete(conversation)) this.send({ type: "unsubscribe", conversation });
  }

  /** The server refused the conversation's subscription (it is no longer
   * this person's): not subscribed again on a reconnect. The view stays
   * attached, to hear the refusals of its sends still on their way. */
  forget(conversation) {
    this.subscribed.delete(conversation);
  }

  /** The view of a subscribed conversation, which its frames go to. */
  listener(conversation) {
    return this.subscribed.has(conversation) ? this.rooms.get(conversation) : undefined;
  }

  followInbox(handler) {
    this.inboxHandler = handler;
    this.send({ type: "inbox" });
  }

  tick() {
    const now = Date.now();
    if (this.isOpen()) {
      if (this.pingSentAt && now - this.pingSentAt > PONG_TIMEOUT_MS) {
        this.drop();
        return;
      }
      if (!this.pingSentAt && now - this.lastFrameAt > PING_EVERY_MS) {
        this.pingSentAt = now;
        this.send({ type: "ping" });
      }
    }
    this.sends.tick(now);
  }

  // -- incoming ------------------------------------------------------------

  dispatch(frame) {
    switch (frame.type) {
      case "pong":
        return;
      case "ack":
        this.sends.settle(frame.client_id, frame.message);
        return;
      case "error":
        if (frame.client_id) {
          this.sends.fail(frame.client_id, frame.code, frame.message, frame.retry_after_ms);
        } else if (frame.code === "unauthorized") {
          this.stop();
        } else if (frame.conversation) {
          this.listener(frame.conversation)?.onFrame(frame);
        }
        return;
      case "inbox":
        if (this.inboxHandler) this.inboxHandler(frame);
        this.emit("inbox", frame);
        return;
      case "notification":
        this.emit("notification", frame);
        return;
      default: {
        // Read receipts also reach page-wide listeners (the bell clears an
        // entry when this person reads its conversation).
        if (frame.type === "read") this.emit("read", frame);
        const id = frame.conversation || (frame.message && frame.message.conversation);
        this.listener(id)?.onFrame(frame);
      }
    }
  }
}

export const connection = new Connection();
