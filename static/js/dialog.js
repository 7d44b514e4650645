// Modal dialogs (confirmations, the link editor) and toasts.
//
// A dialog is a native <dialog> opened with showModal(): the rest of the
// page is inert while it is open, Tab cycles through the dialog's own
// controls, Escape cancels, it is labelled by its title and described by its
// text, and focus returns to where it was (or to `returnTo`) when it closes.

let counter = 0;

function element(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "className") el.className = value;
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value);
  }
  el.append(...children);
  return el;
}

function focusables(root) {
  return [...root.querySelectorAll("button, input, select, textarea, a[href]")].filter(
    (el) => !el.disabled && !el.hidden && el.offsetParent !== null,
  );
}

/** Opens `dialog` (already filled in) and resolves with what `settle` gets. */
function run(dialog, { initial, returnTo }) {
  const before = document.activeElement;
  document.body.append(dialog);
  return new Promise((resolve) => {
    let result = null;
    const settle = (value) => {
      result = value;
      dialog.close();
    };
    dialog.addEventListener("keydown", (event) => {
      if (event.key !== "Tab") return;
      const items = focusables(dialog);
      if (!items.length) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        last.focus();
        event.preventDefault();
      } else if (!event.shiftKey && document.activeElement === last) {
        first.focus();
        event.preventDefault();
      }
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      const back = before && before.isConnected && before.offsetParent !== null ? before : returnTo;
      if (back && back.isConnected) back.focus();
      resolve(result);
    });
    dialog.settle = settle;
    dialog.showModal();
    (initial ? dialog.querySelector(initial) : focusables(dialog)[0])?.focus();
  });
}

/** Asks before an action that cannot be undone. Resolves true to go ahead.
 * The safe choice (Cancel) has the focus, so a stray Enter destroys nothing. */
export function confirmAction({ title, text, confirm, danger = true, returnTo }) {
  counter += 1;
  const titleId = `dialog-title-${counter}`;
  const textId = `dialog-text-${counter}`;
  const cancelButton = element("button", { type: "button", className: "button", "data-role": "cancel", text: "Cancel" });
  const confirmButton = element("button", {
    type: "button",
    className: `button ${danger ? "danger" : "primary"}`,
    "data-testid": "confirm",
    text: confirm,
  });
  const dialog = element(
    "dialog",
    { className: "dialog", "aria-labelledby": titleId, "aria-describedby": textId, "data-testid": "confirm-dialog" },
    element("h2", { id: titleId, text: title }),
    element("p", { id: textId, className: "dialog-text", text }),
    element("div", { className: "dialog-actions" }, cancelButton, confirmButton),
  );
  cancelButton.addEventListener("click", () => dialog.settle(false));
  confirmButton.addEventListener("click", () => dialog.settle(true));
  return run(dialog, { initial: '[data-role="cancel"]', returnTo }).then(Boolean);
}

/** The composer's link editor: resolves { words, address } or null. `check`
 * turns them into Markdown or returns null to say the address is not usable. */
export function editLink({ words, returnTo, check }) {
  counter += 1;
  const titleId = `dialog-title-${counter}`;
  const wordsInput = element("input", { type: "text", id: `link-words-${counter}`, autocomplete: "off" });
  wordsInput.value = words;
  const addressInput = element("input", {
    type: "text",
    id: `link-address-${counter}`,
    inputmode: "url",
    autocomplete: "off",
    placeholder: "https://example.org",
    "aria-describedby": `link-error-${counter}`,
  });
  const error = element("p", { className: "dialog-error", id: `link-error-${counter}`, role: "alert" });
  const form = element(
    "form",
    { method: "dialog", className: "dialog-form" },
    element("label", { for: wordsInput.id, text: "Text to show" }),
    wordsInput,
    element("label", { for: addressInput.id, text: "Link address" }),
    addressInput,
    error,
    element(
      "div",
      { className: "dialog-actions" },
      element("button", { type: "button", className: "button", "data-role": "cancel", text: "Cancel" }),
      element("button", { type: "submit", className: "button primary", text: "Add link" }),
    ),
  );
  const dialog = element("dialog", { className: "dialog", "aria-labelledby": titleId }, element("h2", { id: titleId, text: "Add a link" }), form);
  form.querySelector('[data-role="cancel"]').addEventListener("click", () => dialog.settle(null));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const markdown = check(wordsInput.value, addressInput.value);
    if (!markdown) {
      error.textContent = "Enter a web address (https://…) or an e-mail address.";
      addressInput.setAttribute("aria-invalid", "true");
      addressInput.focus();
      return;
    }
    dialog.settle(markdown);
  });
  return run(dialog, { initial: words ? `#${addressInput.id}` : `#${wordsInput.id}`, returnTo });
}

let toastRegion = null;

/** A short message at the bottom of the screen, optionally with one action
 * (Undo). It stays while hovered or focused, and goes after `timeout`.
 * `focus`: the action button takes the focus (what was acted on from the
 * keyboard left focus nowhere); Escape then dismisses the toast. `returnTo`:
 * where focus goes when the toast goes (its action pressed, dismissed)
 * while focus is inside it, if that is still on the page. */
export function toast(text, { action, timeout = 8000, focus = false, returnTo } = {}) {
  if (!toastRegion) {
    toastRegion = element("div", { className: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(toastRegion);
  }
  const item = element("div", { className: "toast", "data-testid": "toast" }, element("span", { text }));
  let timer = null;
  const dismiss = () => {
    clearTimeout(timer);
    const hadFocus = item.contains(document.activeElement);
    item.remove();
    if (hadFocus && returnTo && returnTo.isConnected && returnTo.offsetParent !== null) returnTo.focus();
  };
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(dismiss, timeout);
  };
  if (action) {
    const button = element("button", { type: "button", className: "link-button", text: action.label });
    button.addEventListener("click", () => {
      dismiss();
      action.run();
    });
    item.append(button);
  }
  const close = element("button", { type: "button", className: "toast-close", "aria-label": "Dismiss", text: "×" });
  close.addEventListener("click", dismiss);
  item.append(close);
  item.addEventListener("mouseenter", () => clearTimeout(timer));
  item.addEventListener("mouseleave", arm);
  item.addEventListener("focusin", () => clearTimeout(timer));
  item.addEventListener("focusout", arm);
  item.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.stopPropagation();
    dismiss();
  });
  toastRegion.append(item);
  arm();
  if (focus && action) item.querySelector("button").focus();
  return dismiss;
}
