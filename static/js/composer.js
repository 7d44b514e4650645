// The message composer: a textarea for the Markdown subset of SPEC 2 with a
// toolbar that edits selections and lines (markdown-edit.js), a live preview
// rendered by the server's own renderer, pasted rich text reduced to the
// subset, and attachments uploaded first and sent by id. What is written
// and not sent is kept as the conversation's draft (drafts.js).
//
// Keys: Enter sends, Shift+Enter starts a new line, Ctrl/Cmd+Enter always
// sends. On a touch-first device (a phone, a tablet) Enter starts a new line
// and the Send button sends: their keyboards have no Shift+Enter. In a list you are typing, Enter starts the next item and Enter on an
// empty item ends the list. Ctrl+B bold, Ctrl+I italic, Ctrl+Shift+8 bullets,
// Ctrl+Shift+7 numbers, Ctrl+K link.

import { api } from "./api.js";
import { editLink } from "./dialog.js";
import { clearDraft, loadDraft, saveDraft } from "./drafts.js";
import { continueList, linkMarkdown, toggleEmphasis, toggleList } from "./markdown-edit.js";
import { htmlToMarkdown } from "./paste.js";
import { fileSize } from "./ui.js";

// The preview waits for a pause in typing, then asks the server.
const PREVIEW_DEBOUNCE_MS = 200;
// The draft is saved after a pause in typing (and whenever the view closes).
const DRAFT_DEBOUNCE_MS = 400;
// Text without any of these renders as itself, so it needs no preview.
const MARKUP_HINT = /[*_[\]<>&\\@:]|www\.|^\s*([-+]|\d+[.)])\s/m;
// What the preview shows is worth showing only when it is formatted.
const FORMATTED = /<(strong|em|ul|ol|a)\b/;
// Input that arrives as a block (pasted, dropped, filled in by a program)
// rather than typed: a list in it is sent on Enter, not continued.
const BULK_INPUT = new Set(["insertFromPaste", "insertFromDrop", "insertReplacementText", "insertFromYank"]);
const WEB_ADDRESS = /^(https?:\/\/|mailto:)\S+$/i;
// A device whose main pointer is a finger: its on-screen keyboard's Enter
// is the only way to a new line.
const TOUCH_FIRST = "(hover: none) and (pointer: coarse)";

/** Whether Enter sends here (not on a touch-first device). */
export function enterSends() {
  return !window.matchMedia(TOUCH_FIRST).matches;
}

export class Composer {
  /** `draft`: the conversation whose draft this composer keeps; `maxBody`:
   * the server's limit in characters (0 for none). */
  constructor(form, { onSend, onTyping, maxAttachments, maxBody = 0, draft }) {
    this.form = form;
    this.textarea = form.querySelector('[data-testid="composer"]');
    this.sendButton = form.querySelector('[data-testid="send"]');
    this.reason = form.querySelector('[data-testid="send-disabled-reason"]');
    this.fileInput = form.querySelector('[data-role="file-input"]');
    this.fileList = form.querySelector('[data-role="files"]');
    this.preview = form.querySelector('[data-role="preview"]');
    this.previewBody = form.querySelector('[data-role="preview-body"]');
    this.onSend = onSend;
    this.onTyping = onTyping;
    this.maxAttachments = maxAttachments;
    this.files = [];
    this.enabled = true;
    // Whether the text under the caret was typed (so Enter continues a list).
    this.typed = false;
    this.applying = false;
    this.previewTimer = null;
    this.previewRound = 0;
    this.draft = draft;
    this.draftTimer = null;
    // Whether the person changed anything since the draft was restored or
    // saved: only then does closing the view save it (a tab merely showing
    // a draft must not bring back one sent, or drop one being written, in
    // another tab).
    this.dirty = false;
    // When the draft this composer restored or last saved was saved: the
    // one that sending clears (drafts.js's clearDraft).
    this.draftSavedAt = null;
    // A send waiting for its files to finish uploading.
    this.waiting = false;
    // A send refused here because a file could not be attached.
    this.heldByFiles = false;
    this.closed = false;
    this.status = form.querySelector('[data-testid="composer-status"]');
    this.maxBody = maxBody;
    this.tooLong = false;
    this.bind();
    this.restoreDraft();
  }

  bind() {
    const { textarea } = this;
    textarea.addEventListener("input", (event) => {
      if (!this.applying) {
        const bulk = BULK_INPUT.has(event.inputType) || (event.inputType === "insertText" && (event.data || "").length > 1);
        this.typed = !bulk;
      }
      this.autosize();
      this.checkLength();
      this.schedulePreview();
      this.scheduleDraft();
      if (textarea.value.trim()) this.onTyping();
    });
    textarea.addEventListener("keydown", (event) => this.onKey(event));
    if (!enterSends()) this.form.querySelector(".composer-hint").textContent = "Enter starts a new line · Send sends";
    textarea.addEventListener("paste", (event) => this.onPaste(event));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    for (const button of this.form.querySelectorAll("[data-format]")) {
      // Keep the textarea's selection: do not take focus on mouse down.
      button.addEventListener("mousedown", (event) => event.preventDefault());
      button.addEventListener("click", () => this.format(button.dataset.format));
    }
    const attach = this.form.querySelector('[data-testid="attach"]');
    attach.addEventListener("click", () => this.fileInput.click());
    this.fileInput.addEventListener("change", () => {
      for (const file of this.fileInput.files) this.upload(file);
      this.fileInput.value = "";
    });
  }

  onKey(event) {
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    if (event.key === "Enter" && !event.isComposing) {
      if (mod) {
        event.preventDefault();
        this.submit();
      } else if (!event.shiftKey) {
        if (this.continueList()) event.preventDefault();
        else if (enterSends()) {
          event.preventDefault();
          this.submit();
        }
      }
    } else if (mod && !event.shiftKey && !event.altKey && key === "b") {
      event.preventDefault();
      this.format("bold");
    } else if (mod && !event.shiftKey && !event.altKey && key === "i") {
      event.preventDefault();
      this.format("italic");
    } else if (mod && !event.shiftKey && !event.altKey && key === "k") {
      event.preventDefault();
      this.format("link");
    } else if (mod && event.shiftKey && (event.code === "Digit8" || event.key === "*")) {
      event.preventDefault();
      this.format("list");
    } else if (mod && event.shiftKey && (event.code === "Digit7" || event.key === "&")) {
      event.preventDefault();
      this.format("numbered");
    }
  }

  /** Enter in a list being typed: the next item, or the end of the list. */
  continueList() {
    const { textarea } = this;
    if (!this.typed || textarea.selectionStart !== textarea.selectionEnd) return false;
    const edit = continueList(textarea.value, textarea.selectionStart);
    if (!edit) return false;
    this.apply(edit);
    return true;
  }

  /** Makes an edit as if typed: one step in the browser's undo history. */
  apply(edit) {
    if (!edit) return;
    const { textarea } = this;
    textarea.focus();
    this.applying = true;
    try {
      textarea.setSelectionRange(edit.from, edit.to);
      const inserted = edit.text === ""
        ? edit.from === edit.to || document.execCommand("delete", false)
        : document.execCommand("insertText", false, edit.text);
      if (!inserted) {
        textarea.setRangeText(edit.text, edit.from, edit.to, "end");
        textarea.dispatchEvent(new Event("input", { bubbles: true }));
      }
    } finally {
      this.applying = false;
    }
    this.typed = true;
    textarea.setSelectionRange(edit.selStart, edit.selEnd);
  }

  async format(kind) {
    if (!this.enabled) return;
    const { textarea } = this;
    const { value, selectionStart: start, selectionEnd: end } = textarea;
    if (kind === "bold" || kind === "italic") this.apply(toggleEmphasis(value, start, end, kind));
    else if (kind === "list" || kind === "numbered") this.apply(toggleList(value, start, end, kind === "numbered"));
    else if (kind === "link") {
      const markdown = await editLink({
        words: value.slice(start, end).trim(),
        returnTo: textarea,
        check: (words, address) => linkMarkdown(words, address),
      });
      textarea.focus();
      textarea.setSelectionRange(start, end);
      if (markdown) this.apply({ from: start, to: end, text: markdown, selStart: start + markdown.length, selEnd: start + markdown.length });
    }
  }

  /** Rich text comes in as the Markdown subset; a web address pasted over
   * selected words links them. Plain text is pasted as the browser does. */
  onPaste(event) {
    const data = event.clipboardData;
    if (!data || !this.enabled) return;
    const { textarea } = this;
    const { selectionStart: start, selectionEnd: end, value } = textarea;
    const plain = data.getData("text/plain");
    if (start !== end && WEB_ADDRESS.test(plain.trim()) && !value.slice(start, end).includes("\n")) {
      const markdown = linkMarkdown(value.slice(start, end), plain.trim());
      if (markdown) {
        event.preventDefault();
        this.apply({ from: start, to: end, text: markdown, selStart: start + markdown.length, selEnd: start + markdown.length });
        return;
      }
    }
    const html = data.getData("text/html");
    if (!html) return;
    const markdown = htmlToMarkdown(html);
    if (!markdown) return;
    event.preventDefault();
    this.apply({ from: start, to: end, text: markdown, selStart: start + markdown.length, selEnd: start + markdown.length });
    // A pasted list is sent on Enter like any other block of text.
    this.typed = false;
  }

  schedulePreview() {
    clearTimeout(this.previewTimer);
    const body = this.textarea.value;
    if (!body.trim() || !MARKUP_HINT.test(body)) {
      this.previewRound += 1;
      this.showPreview("");
      return;
    }
    this.previewTimer = setTimeout(() => this.refreshPreview(body), PREVIEW_DEBOUNCE_MS);
  }

  async refreshPreview(body) {
    this.previewRound += 1;
    const round = this.previewRound;
    try {
      const { html } = await api.post("/api/preview", { body });
      if (round === this.previewRound) this.showPreview(html);
    } catch {
      // Offline or too long: the message itself will say so when sent.
      if (round === this.previewRound) this.showPreview("");
    }
  }

  showPreview(html) {
    const formatted = FORMATTED.test(html);
    this.preview.hidden = !formatted;
    // Sanitised on the server with an allowlist (SPEC 2), like a message.
    if (formatted) this.previewBody.innerHTML = html;
    else this.previewBody.replaceChildren();
  }

  autosize() {
    const { textarea } = this;
    textarea.style.height = "auto";
    textarea.style.height = `${textarea.scrollHeight}px`;
  }

  upload(file) {
    if (this.files.filter((f) => !f.error).length >= this.maxAttachments) {
      this.refuseFile(file.name, `At most ${this.maxAttachments} files per message.`);
      return;
    }
    const entry = { name: file.name, size: file.size, id: null, error: null };
    entry.done = (async () => {
      const data = new FormData();
      data.append("file", file);
      try {
        const stored = await api.post("/api/attachments", data);
        entry.id = stored.id;
        entry.contentType = stored.content_type;
        entry.uploadedAt = Date.now();
      } catch (err) {
        entry.error = err.message;
      }
      this.renderChip(entry);
      this.dirty = true;
      this.saveDraft();
    })();
    this.files.push(entry);
    this.addChip(entry);
  }

  /** A file that will not be attached: its chip says why, and holds the
   * send until it is removed (see `submit`). */
  refuseFile(name, reason) {
    const entry = { name, id: null, error: reason, done: Promise.resolve() };
    this.files.push(entry);
    this.addChip(entry);
  }

  addChip(entry) {
    const li = document.createElement("li");
    entry.chip = li;
    this.fileList.append(li);
    this.fileList.hidden = false;
    this.renderChip(entry);
  }

  renderChip(entry) {
    const li = entry.chip;
    li.replaceChildren();
    li.className = entry.error ? "error" : entry.id ? "" : "uploading";
    const name = document.createElement("span");
    name.className = "file-name";
    name.textContent = entry.name;
    name.title = entry.name;
    li.append(name);
    if (entry.error) {
      // The whole reason, wrapped on its own line: it is what to act on.
      const error = document.createElement("span");
      error.className = "file-error";
      // Said at once: the person may not look at the chips before Send.
      error.setAttribute("role", "alert");
      error.textContent = entry.error;
      li.append(error);
    } else if (entry.size !== undefined) {
      const size = document.createElement("span");
      size.className = "muted";
      size.textContent = entry.id ? fileSize(entry.size) : "Uploading…";
      li.append(size);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${entry.name}`);
    remove.addEventListener("click", () => this.removeFile(entry));
    li.append(remove);
  }

  removeFile(entry) {
    this.files = this.files.filter((f) => f !== entry);
    // A chip removed from the keyboard hands focus on: to the next chip's
    // button, else the one before, else the message being written.
    const chip = entry.chip;
    const focused = chip.contains(document.activeElement);
    const neighbour = chip.nextElementSibling || chip.previousElementSibling;
    chip.remove();
    if (focused) (neighbour?.querySelector("button") || this.textarea).focus();
    this.fileList.hidden = this.fileList.children.length === 0;
    if (this.heldByFiles && !this.files.some((f) => f.error)) {
      this.heldByFiles = false;
      this.showStatus();
    }
    this.scheduleDraft();
  }

  // -- the draft (drafts.js) -------------------------------------------------

  restoreDraft() {
    if (!this.draft) return;
    const draft = loadDraft(this.draft);
    if (!draft) return;
    this.draftSavedAt = draft.savedAt;
    this.textarea.value = draft.body;
    for (const f of draft.files) {
      const entry = { ...f, error: null, done: Promise.resolve() };
      this.files.push(entry);
      this.addChip(entry);
    }
    this.autosize();
    this.checkLength();
    this.schedulePreview();
  }

  scheduleDraft() {
    if (!this.draft) return;
    this.dirty = true;
    clearTimeout(this.draftTimer);
    this.draftTimer = setTimeout(() => this.saveDraft(), DRAFT_DEBOUNCE_MS);
  }

  /** Keep what was changed, now (the page is going away, a file finished
   * uploading). */
  saveDraft() {
    clearTimeout(this.draftTimer);
    this.draftTimer = null;
    if (!this.draft || !this.dirty || this.waiting) return;
    this.keepAsDraft(this.draft);
  }

  keepAsDraft(conversation) {
    this.dirty = false;
    this.draftSavedAt = saveDraft(conversation, this.textarea.value, this.files.filter((f) => f.id));
  }

  /** The view is closing: keep what was changed, and nothing after (an
   * upload finishing later must not write over the draft of a composer
   * opened since). What is waiting to be sent is not a draft: it is sent. */
  close() {
    this.saveDraft();
    this.draft = null;
    this.closed = true;
  }

  /** A refused send's text, back to be changed and sent again: before
   * what is being written, if anything is. Its files are not: the refusal
   * may be about them, and they are attached again. */
  takeBack(body) {
    const now = this.textarea.value;
    this.textarea.value = now.trim() ? `${body}\n${now}` : body;
    this.typed = false;
    this.autosize();
    this.checkLength();
    this.schedulePreview();
    this.scheduleDraft();
    if (this.enabled) this.textarea.focus();
  }

  async submit() {
    if (!this.enabled || this.waiting || this.tooLong) return;
    const draft = this.draft;
    const uploading = this.files.filter((f) => !f.id && !f.error);
    if (uploading.length) {
      // Sent as soon as its files are uploaded, as it is now: a second
      // Enter meanwhile does nothing, and closing the view still sends it.
      this.wait(true);
      await Promise.all(uploading.map((f) => f.done));
      this.wait(false);
    }
    if (this.files.some((f) => f.error)) {
      // Never without a file the person attached (a message saying "the
      // contract is attached" with nothing attached): its chip says why,
      // the line says what to do, and the rest stays a draft.
      this.heldByFiles = true;
      this.showStatus();
      if (draft) this.keepAsDraft(draft);
      return;
    }
    const body = this.textarea.value;
    const ready = this.files.filter((f) => f.id);
    if (!body.trim() && ready.length === 0) return;
    this.onSend(body, ready.map((f) => ({ id: f.id, name: f.name, size: f.size, content_type: f.contentType })));
    this.textarea.value = "";
    this.typed = false;
    for (const f of [...this.files]) this.removeFile(f);
    this.fileList.replaceChildren();
    this.fileList.hidden = true;
    // Sent: pending-sends.js holds it from here until its ack.
    clearTimeout(this.draftTimer);
    this.dirty = false;
    if (draft) clearDraft(draft, this.draftSavedAt);
    this.draftSavedAt = null;
    this.schedulePreview();
    this.autosize();
    if (!this.closed) this.textarea.focus();
  }

  /** Whether a send is waiting for its files: the text and Send held. */
  wait(waiting) {
    this.waiting = waiting;
    this.textarea.readOnly = waiting;
    this.showStatus();
  }

  /** Over the server's limit the text is kept whole (not cut, as a
   * textarea's maxlength would cut a paste) and Send says by how much. */
  checkLength() {
    // The server counts code points; JavaScript's length counts an emoji twice.
    const length = this.maxBody && this.textarea.value.length > this.maxBody ? [...this.textarea.value].length : 0;
    const tooLong = length > this.maxBody;
    if (tooLong === this.tooLong && !tooLong) return;
    this.tooLong = tooLong;
    this.overBy = length - this.maxBody;
    this.showStatus();
  }

  showStatus() {
    const text = this.waiting
      ? "Sending once the files are uploaded…"
      : this.heldByFiles
        ? "Not sent: a file could not be attached. Remove it (×) or attach it again, then send."
        : this.tooLong
        ? `${this.overBy.toLocaleString()} character${this.overBy === 1 ? "" : "s"} too long: a message has at most ${this.maxBody.toLocaleString()}.`
        : "";
    this.status.textContent = text;
    this.status.hidden = !text;
    this.status.classList.toggle("problem", this.tooLong && !this.waiting);
    this.textarea.setAttribute("aria-invalid", String(this.tooLong));
    this.sendButton.disabled = !this.enabled || this.waiting || this.tooLong;
  }

  setEnabled(enabled, reason) {
    this.enabled = enabled;
    this.form.classList.toggle("disabled", !enabled);
    this.textarea.disabled = !enabled;
    this.sendButton.disabled = !enabled || this.waiting || this.tooLong;
    for (const button of this.form.querySelectorAll(".tool")) button.disabled = !enabled;
    this.reason.hidden = enabled;
    this.reason.textContent = enabled ? "" : reason || "You can't send messages in this conversation.";
    this.textarea.placeholder = enabled ? "Write a message…" : "Sending is turned off";
  }
}
