// What a person has written and not sent, per conversation, kept by
// local-store.js so that opening another conversation, reloading the page
// or coming back tomorrow does not lose a half-written reply, nor the files
// already uploaded for it.
//
// Files the server expires before they are sent (CHAT_UNSENT_UPLOAD_DAYS,
// given to the page as `data-unsent-upload-days`) are left out of a
// restored draft a little before that, so that a restored draft does not
// send a file the server no longer has.

import { DAY_MS, KEPT_MS, drop, keep, keyOf, load } from "./local-store.js";
import { previewText } from "./ui.js";

// Who shows drafts (the inbox's rows), told which conversation's changed:
// in this tab when it is saved or cleared, in the person's other tabs by a
// "storage" event.
const watchers = new Set();
const DRAFT_PREFIX = keyOf("draft", "");
window.addEventListener("storage", (event) => {
  if (event.key?.startsWith(DRAFT_PREFIX)) changed(event.key.slice(DRAFT_PREFIX.length));
});

function changed(conversation) {
  for (const watcher of watchers) watcher(conversation);
}

/** Call `watcher(conversation)` whenever a draft is saved or cleared,
 * here or in another tab of this person. */
export function watchDrafts(watcher) {
  watchers.add(watcher);
}

// A restored draft's files must have this much of their life left.
const FILE_MARGIN_MS = 60 * 60 * 1000;

function fileLifeMs() {
  const days = Number(document.body.dataset.unsentUploadDays);
  return (days > 0 ? days : 14) * DAY_MS;
}

/** The draft of `conversation`: `{body, files, savedAt}` (files as the
 * composer keeps uploaded ones: `{id, name, size, contentType,
 * uploadedAt}`), or null when there is none. */
export function loadDraft(conversation) {
  const key = keyOf("draft", conversation);
  const draft = load(key);
  if (!draft) return null;
  const now = Date.now();
  if (typeof draft.body !== "string" || !(now - draft.savedAt < KEPT_MS)) {
    drop(key);
    return null;
  }
  const usable = (f) => f && typeof f.id === "string" && typeof f.name === "string" && now - f.uploadedAt < fileLifeMs() - FILE_MARGIN_MS;
  const files = Array.isArray(draft.files) ? draft.files.filter(usable) : [];
  if (!draft.body && files.length === 0) return null;
  return { body: draft.body, files, savedAt: draft.savedAt };
}

/** Keep `body` and `files` as the draft of `conversation` (an empty one
 * is removed); its `savedAt`, or null for none. */
export function saveDraft(conversation, body, files) {
  const key = keyOf("draft", conversation);
  let savedAt = null;
  if (!body.trim() && files.length === 0) {
    drop(key);
  } else {
    const kept = files.map(({ id, name, size, contentType, uploadedAt }) => ({ id, name, size, contentType, uploadedAt }));
    savedAt = Date.now();
    keep(key, { body, files: kept, savedAt });
  }
  changed(conversation);
  return savedAt;
}

/** The draft of `conversation` as the inbox row shows it, or null. */
export function draftPreview(conversation) {
  const draft = loadDraft(conversation);
  return draft ? previewText(draft.body, draft.files) || null : null;
}

/** Remove the draft of `conversation` if it is still the one saved at
 * `savedAt` (the one a composer restored or saved before sending): a draft
 * saved since, in another tab, is that tab's writing, not what was sent. */
export function clearDraft(conversation, savedAt) {
  const key = keyOf("draft", conversation);
  if (load(key)?.savedAt !== savedAt) return;
  drop(key);
  changed(conversation);
}
