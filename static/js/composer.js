// The message composer: a textarea with Markdown shortcuts (the server
// renders the Markdown subset), Enter to send, Shift+Enter for a new line,
// attachments uploaded first and sent by id (SPEC 2).

import { api } from "./api.js";
import { fileSize } from "./ui.js";

const MARKERS = { bold: "**", italic: "_" };

/** Replace the textarea's selection keeping the browser's undo history. */
function replaceSelection(textarea, text, selectStart, selectEnd) {
  textarea.focus();
  const start = textarea.selectionStart;
  if (!document.execCommand || !document.execCommand("insertText", false, text)) {
    textarea.setRangeText(text, start, textarea.selectionEnd, "end");
  }
  textarea.setSelectionRange(start + selectStart, start + selectEnd);
  textarea.dispatchEvent(new Event("input", { bubbles: true }));
}

function toggleWrap(textarea, marker) {
  const { value, selectionStart: start, selectionEnd: end } = textarea;
  const selected = value.slice(start, end);
  const m = marker.length;
  if (value.slice(start - m, start) === marker && value.slice(end, end + m) === marker) {
    textarea.setSelectionRange(start - m, end + m);
    replaceSelection(textarea, selected, 0, selected.length);
    return;
  }
  replaceSelection(textarea, `${marker}${selected}${marker}`, m, m + selected.length);
}

function toggleList(textarea) {
  const { value } = textarea;
  const lineStart = value.lastIndexOf("\n", textarea.selectionStart - 1) + 1;
  let lineEnd = value.indexOf("\n", textarea.selectionEnd);
  if (lineEnd === -1) lineEnd = value.length;
  const lines = value.slice(lineStart, lineEnd).split("\n");
  const listed = lines.every((line) => line.startsWith("- "));
  const changed = lines.map((line) => (listed ? line.slice(2) : `- ${line}`)).join("\n");
  textarea.setSelectionRange(lineStart, lineEnd);
  replaceSelection(textarea, changed, changed.length, changed.length);
}

export class Composer {
  constructor(form, { onSend, onTyping, maxAttachments }) {
    this.form = form;
    this.textarea = form.querySelector('[data-testid="composer"]');
    this.sendButton = form.querySelector('[data-testid="send"]');
    this.reason = form.querySelector('[data-testid="send-disabled-reason"]');
    this.fileInput = form.querySelector('[data-role="file-input"]');
    this.fileList = form.querySelector('[data-role="files"]');
    this.onSend = onSend;
    this.onTyping = onTyping;
    this.maxAttachments = maxAttachments;
    this.files = [];
    this.enabled = true;
    this.bind();
  }

  bind() {
    const { textarea } = this;
    textarea.addEventListener("input", () => {
      this.autosize();
      if (textarea.value.trim()) this.onTyping();
    });
    textarea.addEventListener("keydown", (event) => this.onKey(event));
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
    if (event.key === "Enter" && !event.shiftKey && !mod && !event.isComposing) {
      event.preventDefault();
      this.submit();
    } else if (mod && !event.shiftKey && event.key.toLowerCase() === "b") {
      event.preventDefault();
      this.format("bold");
    } else if (mod && !event.shiftKey && event.key.toLowerCase() === "i") {
      event.preventDefault();
      this.format("italic");
    } else if (mod && event.shiftKey && (event.code === "Digit8" || event.key === "*")) {
      event.preventDefault();
      this.format("list");
    }
  }

  format(kind) {
    if (!this.enabled) return;
    if (kind === "list") toggleList(this.textarea);
    else toggleWrap(this.textarea, MARKERS[kind]);
  }

  autosize() {
    const { textarea } = this;
    textarea.style.height = "auto";
    textarea.style.height = `${textarea.scrollHeight}px`;
  }

  upload(file) {
    if (this.files.length >= this.maxAttachments) {
      this.addChip({ name: file.name, error: `At most ${this.maxAttachments} files per message.` });
      return;
    }
    const entry = { name: file.name, size: file.size, id: null, error: null };
    entry.done = (async () => {
      const data = new FormData();
      data.append("file", file);
      try {
        const stored = await api.post("/api/attachments", data);
        entry.id = stored.id;
      } catch (err) {
        entry.error = err.message;
      }
      this.renderChip(entry);
    })();
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
    name.textContent = entry.error ? `${entry.name}: ${entry.error}` : entry.name;
    li.append(name);
    if (entry.size !== undefined && !entry.error) {
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
    entry.chip.remove();
    this.fileList.hidden = this.fileList.children.length === 0;
  }

  async submit() {
    if (!this.enabled) return;
    const body = this.textarea.value;
    await Promise.all(this.files.map((f) => f.done));
    const ready = this.files.filter((f) => f.id);
    if (!body.trim() && ready.length === 0) return;
    this.onSend(body, ready.map((f) => ({ id: f.id, name: f.name, size: f.size })));
    this.textarea.value = "";
    for (const f of [...this.files]) this.removeFile(f);
    this.fileList.replaceChildren();
    this.fileList.hidden = true;
    this.autosize();
    this.textarea.focus();
  }

  setEnabled(enabled, reason) {
    this.enabled = enabled;
    this.form.classList.toggle("disabled", !enabled);
    this.textarea.disabled = !enabled;
    this.sendButton.disabled = !enabled;
    for (const button of this.form.querySelectorAll(".tool")) button.disabled = !enabled;
    this.reason.hidden = enabled;
    this.reason.textContent = enabled ? "" : reason || "You can't send messages in this conversation.";
    this.textarea.placeholder = enabled ? "Write a message…" : "Sending is turned off";
  }
}
