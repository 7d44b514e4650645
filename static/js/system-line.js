// A system line: what happened to the conversation (ended, reopened, the
// application's status changed), told by the server as a MESSAGE from PERSON
// kind "system" (docs/protocol.md). Shown centred and muted with its time,
// without a sender, a bubble or a menu; it keeps the classes and data that
// place, group and read messages by seq.

import { clock, fullTime } from "./time.js";

export function isSystemLine(message) {
  return message.sender.kind === "system";
}

export function systemLine(message) {
  const li = document.createElement("li");
  li.className = "msg system-line";
  li.dataset.testid = "system-line";
  li.dataset.seq = String(message.seq);
  li.dataset.id = message.id;
  li.dataset.sender = `${message.sender.kind}:${message.sender.id}`;
  li.dataset.at = message.created_at;
  if (message.event) li.dataset.event = message.event.type;
  const text = document.createElement("p");
  text.className = "system-text";
  // The server's plain sentence; never markup.
  const words = document.createElement("span");
  words.textContent = message.body;
  const at = new Date(message.created_at);
  const time = document.createElement("time");
  time.dateTime = message.created_at;
  time.textContent = clock(at);
  time.title = fullTime(at);
  text.append(words, " · ", time);
  li.append(text);
  return li;
}
