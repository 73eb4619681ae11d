// The console's page behaviour: htmx for partial updates, plus the few helpers its templates use.
//
// Every page works without this file (forms are plain GET/POST forms); this only makes them nicer.
// It must keep working under a strict Content-Security-Policy (script-src 'self', no
// 'unsafe-inline', no 'unsafe-eval'), so htmx's eval-based features are switched off below.
import htmx from "htmx.org";

window.htmx = htmx;

// Strict CSP: no eval (js: filters and values; hx-on needs eval too, so templates must not use it),
// no <style> element injected for .htmx-indicator (the console's stylesheet styles indicators).
// Script tags stay allowed: allowScriptTags=false would strip the charts' <script type=
// "application/json"> specs from swapped content, and the CSP refuses inline JS anyway.
// Pages hold customer data: keep no copies of them in localStorage for the history cache; going
// back reloads the page from the server instead, which also shows fresh numbers.
Object.assign(htmx.config, {
  allowEval: false,
  includeIndicatorStyles: false,
  historyCacheSize: 0,
  refreshOnHistoryMiss: true,
  selfRequestsOnly: true,
});

document.documentElement.classList.add("js"); // lets the stylesheet hide the no-JS "Apply" buttons

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : null;
}

// Every htmx request carries the session's CSRF token, as every plain form does in a hidden field.
document.addEventListener("htmx:configRequest", (event) => {
  const token = csrfToken();
  if (token) event.detail.headers["X-CSRF-Token"] = token;
});

// data-confirm="Question?" on a form (asked on submit) or on a button or link (asked on click).
// Capture phase, so a "no" stops the event before htmx or the browser act on it.
function confirmed(element, event) {
  const question = element.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopImmediatePropagation();
    return false;
  }
  return true;
}

document.addEventListener(
  "submit",
  (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.hasAttribute("data-confirm")) confirmed(form, event);
  },
  true,
);

document.addEventListener(
  "click",
  (event) => {
    const target = event.target instanceof Element ? event.target.closest("[data-confirm]") : null;
    if (target && !(target instanceof HTMLFormElement)) confirmed(target, event);
  },
  true,
);

// data-autosubmit on a filter form (or on one of its fields): changing a select, checkbox, radio
// or date submits the form. Without JS the form's own submit button does the same.
const TYPED = new Set(["text", "search", "email", "number", "tel", "url", "password"]);

document.addEventListener("change", (event) => {
  const field = event.target;
  if (!(field instanceof HTMLElement) || !field.form) return;
  if (!field.hasAttribute("data-autosubmit") && !field.form.hasAttribute("data-autosubmit")) return;
  if (field instanceof HTMLInputElement && TYPED.has(field.type)) return; // typed fields submit on Enter
  field.form.requestSubmit();
});
