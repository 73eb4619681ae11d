// The editor's house look: the console's colours (CSS custom properties inherit into the editor's
// shadow root, so the page's palette applies), a monospace face and YAML colours that read well
// on white. Everything here is mounted by CodeMirror as constructed style sheets (see mount.js).
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { EditorView } from "@codemirror/view";
import { tags as t } from "@lezer/highlight";

const MONO = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';

export const houseTheme = EditorView.theme({
  "&": {
    fontSize: "13px",
    color: "var(--ink, #1d2330)",
    backgroundColor: "var(--panel, #fff)",
    border: "1px solid var(--line, #e3e6eb)",
    borderRadius: "var(--radius, 8px)",
    overflow: "hidden",
  },
  "&.cm-focused": { outline: "2px solid #b9cdf8", outlineOffset: "-1px" },
  ".cm-scroller": { fontFamily: MONO, lineHeight: "1.55" },
  ".cm-content": { padding: "8px 0", caretColor: "var(--accent, #2f6fed)" },
  ".cm-gutters": {
    backgroundColor: "#f7f8fa",
    color: "var(--muted, #667085)",
    borderRight: "1px solid var(--line, #e3e6eb)",
  },
  ".cm-lineNumbers .cm-gutterElement": { padding: "0 8px 0 12px", minWidth: "3ch" },
  ".cm-activeLine": { backgroundColor: "#f3f6fd" },
  ".cm-activeLineGutter": { backgroundColor: "#e6eefe", color: "var(--ink, #1d2330)" },
  ".cm-selectionBackground, &.cm-focused .cm-selectionBackground, ::selection": { backgroundColor: "#d3e1fc !important" },
  ".cm-cursor": { borderLeftColor: "var(--accent, #2f6fed)", borderLeftWidth: "2px" },
  ".cm-lintRange-error": {
    backgroundImage: "none",
    textDecoration: "underline wavy var(--bad, #c0362c)",
    textDecorationSkipInk: "none",
    textUnderlineOffset: "3px",
  },
  ".cm-lintRange-warning": {
    backgroundImage: "none",
    textDecoration: "underline wavy var(--warn, #a15c07)",
    textDecorationSkipInk: "none",
    textUnderlineOffset: "3px",
  },
  ".cm-lint-marker": { width: "0.9em", height: "0.9em" },
  ".cm-tooltip": {
    fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif",
    border: "1px solid var(--line, #e3e6eb)",
    borderRadius: "6px",
    boxShadow: "0 4px 16px rgba(16, 24, 40, .12)",
    backgroundColor: "var(--panel, #fff)",
  },
  ".cm-tooltip-lint": { maxWidth: "min(520px, 90vw)" },
  ".cm-diagnostic": { padding: "6px 10px", whiteSpace: "pre-wrap" },
  ".cm-diagnostic-error": { borderLeft: "4px solid var(--bad, #c0362c)" },
  ".cm-diagnostic-warning": { borderLeft: "4px solid var(--warn, #a15c07)" },
  ".cm-tooltip.cm-tooltip-autocomplete > ul": { fontFamily: MONO, maxHeight: "16em" },
  ".cm-tooltip.cm-tooltip-autocomplete > ul > li": { padding: "2px 8px" },
  ".cm-tooltip-autocomplete ul li[aria-selected]": { backgroundColor: "#e6eefe", color: "var(--ink, #1d2330)" },
  ".cm-completionDetail": { color: "var(--muted, #667085)", fontStyle: "normal", marginLeft: "1em" },
  ".cm-completionInfo": { padding: "6px 10px", maxWidth: "320px" },
  ".cm-panels": { backgroundColor: "#f7f8fa", color: "var(--ink, #1d2330)" },
  ".cm-searchMatch": { backgroundColor: "#fff3c4" },
  // @codemirror/merge: the draft's changes (unified view) and the two sides of a diff.
  ".cm-changedLine, &.cm-merge-b .cm-changedLine": { backgroundColor: "#e9f7ef" },
  "&.cm-merge-a .cm-changedLine, .cm-deletedChunk": { backgroundColor: "#fdeceb" },
  ".cm-changedText, &.cm-merge-b .cm-changedText": { background: "#bfe6cf" },
  "&.cm-merge-a .cm-changedText, .cm-deletedChunk .cm-deletedText": { background: "#f5c2bd" },
  ".cm-deletedChunk": { paddingLeft: "6px" },
  ".cm-collapsedLines": {
    color: "var(--muted, #667085)",
    background: "#f7f8fa",
    borderTop: "1px solid var(--line, #e3e6eb)",
    borderBottom: "1px solid var(--line, #e3e6eb)",
  },
  ".cm-collapsedLines:before": { content: '"↕"' },
  ".cm-collapsedLines:after": { content: '""' },
  ".cm-changeGutter": { width: "4px", paddingLeft: "2px" },
  "&.cm-merge-a .cm-changedLineGutter, .cm-deletedLineGutter": { background: "var(--bad, #c0362c)" },
  "&.cm-merge-b .cm-changedLineGutter, .cm-changedLineGutter": { background: "var(--good, #16794c)" },
});

// YAML: keys stand out, values are quiet, comments step back.
export const houseHighlight = syntaxHighlighting(
  HighlightStyle.define([
    { tag: [t.definition(t.propertyName), t.propertyName], color: "#1f4fb8", fontWeight: "600" },
    { tag: [t.string, t.special(t.string)], color: "#16794c" },
    { tag: [t.number, t.bool, t.null], color: "#8a3ffc" },
    { tag: [t.keyword, t.atom], color: "#a15c07" },
    { tag: [t.comment, t.lineComment, t.blockComment], color: "#7b8494", fontStyle: "italic" },
    { tag: [t.punctuation, t.separator, t.squareBracket, t.brace], color: "#667085" },
    { tag: [t.meta, t.labelName, t.typeName], color: "#7a2e9b" },
    { tag: t.content, color: "#1d2330" },
    { tag: t.invalid, color: "#c0362c" },
  ]),
);
