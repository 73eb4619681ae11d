// Validation while typing: @codemirror/lint calls `source` 350 ms after the last change (never once
// per keystroke); it POSTs the text to data-validate-url, which checks the draft's whole file set
// as publishing would. A newer check aborts the one in flight, and the lint extension drops a
// result whose text is no longer the editor's, so a stale answer never shows.
import { linter } from "@codemirror/lint";

export const DELAY_MS = 350;

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

// The span a problem underlines: from its line and column (1-based) to the end of the word
// there (a name, a number, a quoted text), or the rest of the line when nothing word-like starts there.
export function problemRange(doc, problem) {
  const line = doc.line(Math.min(Math.max(problem.line || 1, 1), doc.lines));
  const column = Math.min(Math.max((problem.column || 1) - 1, 0), line.length);
  const rest = line.text.slice(column);
  const word = /^("[^"]*"?|'[^']*'?|[\w.-]+)/.exec(rest);
  let length = word ? word[0].length : rest.trimEnd().length;
  if (!length) length = Math.min(1, rest.length);
  return { from: line.from + column, to: line.from + column + length };
}

export function summary(result) {
  const problems = result.problems || [];
  const errors = problems.filter((p) => p.severity !== "warning").length;
  const warnings = problems.length - errors;
  const parts = [errors ? `${errors} problem${errors === 1 ? "" : "s"}` : "No problems"];
  if (warnings) parts.push(`${warnings} warning${warnings === 1 ? "" : "s"}`);
  const cases = result.cases || {};
  if (cases.failed) parts.push(cases.failed === 1 ? "1 case fails" : `${cases.failed} cases fail`);
  else if (cases.passed) parts.push(cases.passed === 1 ? "1 case passes" : `${cases.passed} cases pass`);
  return { text: parts.join(" · "), tone: errors || cases.failed ? "bad" : warnings ? "warn" : "good" };
}

// `report` hears every state: {state: "checking"} | {state: "done", result} | {state: "failed", message}.
export function validation({ url, file, report }) {
  let inFlight = null;
  async function source(view) {
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    const doc = view.state.doc;
    report({ state: "checking" });
    let result;
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
        credentials: "same-origin",
        body: JSON.stringify({ content: doc.toString() }),
        signal: controller.signal,
      });
      result = await response.json().catch(() => null);
      if (!response.ok || !result || !Array.isArray(result.problems)) {
        const message = (result && result.message) || `the check failed (HTTP ${response.status})`;
        if (inFlight === controller) report({ state: "failed", message });
        return [];
      }
    } catch (error) {
      if (error.name !== "AbortError" && inFlight === controller) {
        report({ state: "failed", message: "the server could not be reached" });
      }
      return [];
    } finally {
      if (inFlight === controller) inFlight = null;
    }
    if (view.state.doc !== doc) return []; // typed on meanwhile: the next check reports
    report({ state: "done", result });
    return result.problems
      .filter((problem) => problem.file === file)
      .map((problem) => ({
        ...problemRange(doc, problem),
        severity: problem.severity === "warning" ? "warning" : "error",
        message: problem.message,
        source: `line ${problem.line}, column ${problem.column}`,
      }));
  }
  return linter(source, { delay: DELAY_MS });
}
