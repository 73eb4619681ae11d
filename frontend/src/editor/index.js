// The rule editor (CodeMirror 6) and the read-only diff view of the rule studio.
//
//   <div data-rule-editor data-file data-validate-url data-vocabulary-url data-base data-problems
//        data-status [data-readonly]><textarea name="content">…</textarea></div>
//   <button type="button" data-editor-changes>Show changes</button>
//   <div data-merge-view data-a="#old-text" data-b="#new-text"></div>
//
// The page works without this file: the textarea posts the text. With it the textarea is replaced
// by the editor and kept in step with it, so the same form post saves what the editor shows.
// Works under the console's CSP: no eval, no inline style (see mount.js for how styles get in).
import { autocompletion } from "@codemirror/autocomplete";
import { indentUnit } from "@codemirror/language";
import { forceLinting, lintGutter } from "@codemirror/lint";
import { MergeView, unifiedMergeView } from "@codemirror/merge";
import { Compartment, EditorSelection, EditorState } from "@codemirror/state";
import { EditorView, highlightSpecialChars, keymap, lineNumbers } from "@codemirror/view";
import { yaml } from "@codemirror/lang-yaml";
import { basicSetup } from "codemirror";
import { completionSource, vocabularyLoader } from "./complete.js";
import { container } from "./mount.js";
import { houseHighlight, houseTheme } from "./theme.js";
import { problemRange, summary, validation } from "./validate.js";

// Below this width two diff panes would cut every line, and long conditions wrap.
const NARROW = "(max-width: 700px)";

// The editor's size: at least a screenful of lines, at most most of the window (then it scrolls).
const editorSize = EditorView.theme({
  "&": { maxHeight: "75vh" },
  ".cm-scroller": { overflow: "auto" },
  ".cm-content, .cm-gutter": { minHeight: "26em" },
});

const editors = new Map(); // host element -> {view, ...}, for the page and the browser tests
window.ruleEditors = editors;

function pick(selector) {
  return selector ? document.querySelector(selector) : null;
}

function setStatus(element, text, tone) {
  if (!element) return;
  element.textContent = text;
  element.dataset.tone = tone;
}

function goTo(view, problem) {
  const { from, to } = problemRange(view.state.doc, problem);
  view.dispatch({ selection: EditorSelection.range(from, to), scrollIntoView: true });
  view.focus();
}

function fileUrl(validateUrl, file) {
  return validateUrl.replace(/[^/]+\/validate$/, encodeURIComponent(file));
}

// The problem list: every problem of the draft; this file's jump to their place, others link to their file.
function renderProblems(element, result, host, view) {
  if (!element) return;
  element.replaceChildren();
  const problems = result.problems || [];
  element.dataset.count = String(problems.length);
  for (const problem of problems) {
    const item = document.createElement("li");
    item.className = `problem severity-${problem.severity === "warning" ? "warning" : "error"}`;
    const place = `${problem.file}:${problem.line}:${problem.column}`;
    let target;
    if (problem.file === host.dataset.file) {
      target = document.createElement("button");
      target.type = "button";
      target.addEventListener("click", () => goTo(view, problem));
      target.textContent = `Line ${problem.line}, column ${problem.column}`;
    } else {
      target = document.createElement("a");
      target.href = fileUrl(host.dataset.validateUrl, problem.file);
      target.textContent = place;
    }
    target.className = "problem-place";
    target.title = place;
    const message = document.createElement("span");
    message.className = "problem-message";
    message.textContent = problem.message;
    item.append(target, message);
    element.append(item);
  }
  element.hidden = problems.length === 0;
}

function mountEditor(host) {
  const textarea = host.querySelector("textarea");
  if (!textarea || editors.has(host)) return;
  const readOnly = host.hasAttribute("data-readonly");
  const status = pick(host.dataset.status);
  const problems = pick(host.dataset.problems);
  const base = pick(host.dataset.base);
  const changes = new Compartment();
  const wrapping = new Compartment();
  const narrow = window.matchMedia(NARROW);
  const wrap = () => (narrow.matches ? EditorView.lineWrapping : []);
  let view;

  const report = ({ state, result, message }) => {
    if (state === "checking") setStatus(status, "Checking…", "busy");
    else if (state === "failed") setStatus(status, `Not checked: ${message}`, "bad");
    else {
      const { text, tone } = summary(result);
      setStatus(status, text, tone);
      renderProblems(problems, result, host, view);
      host.dataset.checked = String((Number(host.dataset.checked) || 0) + 1);
    }
  };

  const extensions = [
    basicSetup,
    yaml(),
    indentUnit.of("  "),
    EditorState.tabSize.of(2),
    houseTheme,
    editorSize,
    houseHighlight,
    EditorView.contentAttributes.of({ "aria-label": `Rule file ${host.dataset.file || ""}`.trim() }),
    changes.of([]),
    wrapping.of(wrap()), // on a phone a long condition wraps instead of running off the screen
    EditorView.updateListener.of((update) => {
      if (update.docChanged) textarea.value = update.state.doc.toString();
    }),
  ];
  if (readOnly) extensions.push(EditorState.readOnly.of(true));
  if (host.dataset.validateUrl && !readOnly) {
    extensions.push(validation({ url: host.dataset.validateUrl, file: host.dataset.file, report }), lintGutter());
  }
  if (host.dataset.vocabularyUrl) {
    const load = vocabularyLoader(host.dataset.vocabularyUrl);
    extensions.push(autocompletion({ override: [completionSource(load)], activateOnTyping: true }));
  }
  if (textarea.form) {
    const form = textarea.form;
    extensions.push(keymap.of([{ key: "Mod-s", preventDefault: true, run: () => (form.requestSubmit(), true) }]));
    form.addEventListener("submit", () => (textarea.value = view.state.doc.toString()));
  }

  const { root, box } = container(host, "rule-editor-box");
  view = new EditorView({ state: EditorState.create({ doc: textarea.value, extensions }), parent: box, root });
  textarea.hidden = true;
  narrow.addEventListener("change", () => view.dispatch({ effects: wrapping.reconfigure(wrap()) }));
  host.classList.add("is-mounted");
  editors.set(host, { view, forceLinting: () => forceLinting(view) });

  for (const button of document.querySelectorAll("[data-editor-changes]")) {
    if (!base) {
      button.hidden = true;
      continue;
    }
    button.hidden = false;
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", () => {
      const on = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? "Hide changes" : "Show changes";
      const merge = unifiedMergeView({ original: base.value, mergeControls: false, highlightChanges: true, gutter: true });
      view.dispatch({ effects: changes.reconfigure(on ? merge : []) });
      host.classList.toggle("showing-changes", on);
    });
  }
}

// A read-only diff of two texts (publish page, three-way rebase): side by side, or one column with
// the deleted lines shown inline on a narrow screen, where two panes would cut every line.
function diffSides() {
  return [
    lineNumbers(),
    highlightSpecialChars(),
    EditorView.editable.of(false),
    EditorState.readOnly.of(true),
    EditorState.phrases.of({ "$ unchanged lines": "$ unchanged lines (show)" }),
    yaml(),
    houseTheme,
    houseHighlight,
  ];
}

function mountMergeView(host) {
  if (editors.has(host)) return;
  const a = pick(host.dataset.a);
  const b = pick(host.dataset.b);
  if (!a || !b) return;
  const text = (element) => (element.value !== undefined ? element.value : element.textContent);
  const { root, box } = container(host, "merge-view-box");
  const media = window.matchMedia(NARROW);
  const entry = { view: null, layout: null };
  const draw = () => {
    const layout = media.matches ? "unified" : "side-by-side";
    if (entry.layout === layout) return;
    if (entry.view) entry.view.destroy();
    box.replaceChildren();
    const labels = document.createElement("div");
    labels.className = `merge-labels ${layout}`;
    const names = layout === "unified"
      ? [[host.dataset.bLabel, host.dataset.aLabel].filter(Boolean).join(" against ")]
      : [host.dataset.aLabel || "", host.dataset.bLabel || ""];
    for (const name of names) {
      const label = document.createElement("span");
      label.textContent = name;
      labels.append(label);
    }
    if (host.dataset.aLabel || host.dataset.bLabel) box.append(labels);
    const collapse = { margin: 3, minSize: 6 };
    if (layout === "unified") {
      const merge = unifiedMergeView({ original: text(a), mergeControls: false, highlightChanges: true, gutter: true, collapseUnchanged: collapse });
      const frame = document.createElement("div");
      frame.className = "merge-unified";
      box.append(frame);
      entry.view = new EditorView({ state: EditorState.create({ doc: text(b), extensions: [diffSides(), merge] }), parent: frame, root });
    } else {
      entry.view = new MergeView({
        a: { doc: text(a), extensions: diffSides() },
        b: { doc: text(b), extensions: diffSides() },
        parent: box,
        root,
        gutter: true,
        highlightChanges: true,
        collapseUnchanged: collapse,
      });
    }
    entry.layout = layout;
    host.dataset.layout = layout;
  };
  draw();
  media.addEventListener("change", draw);
  host.classList.add("is-mounted");
  editors.set(host, entry);
}

function mountAll(scope = document) {
  scope.querySelectorAll("[data-rule-editor]").forEach(mountEditor);
  scope.querySelectorAll("[data-merge-view]").forEach(mountMergeView);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => mountAll());
else mountAll();
document.addEventListener("htmx:load", (event) => {
  const target = event.target instanceof Element ? event.target : null;
  if (target && target.matches("[data-rule-editor]")) mountEditor(target);
  else if (target && target.matches("[data-merge-view]")) mountMergeView(target);
  mountAll(target || document);
});
