// Where an editor lives: a shadow root on its host element.
//
// CodeMirror styles itself at run time through style-mod, which writes a <style> element into a
// document's <head>: the console's CSP (style-src 'self', no 'unsafe-inline', and no nonces) refuses
// that element, and the editor would be unstyled. In a shadow root style-mod uses a constructed
// style sheet (adoptedStyleSheets) instead, which the CSP allows, so every editor and diff view is
// mounted in one. The page's CSS custom properties (colours, radius) still inherit into it.

// The few rules for what sits in the shadow root around the editors (labels, heights).
const HOST_CSS = `
:host { display: block; }
.merge-view-box .cm-mergeView { max-height: 520px; border: 1px solid var(--line, #e3e6eb); border-radius: var(--radius, 8px); }
.merge-view-box .cm-mergeView .cm-editor { border: 0; border-radius: 0; }
.merge-labels { display: grid; grid-template-columns: 1fr 1fr; font: 600 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--muted, #667085); margin-bottom: 4px; }
.merge-labels span + span { padding-left: 8px; }
.merge-labels.unified { grid-template-columns: 1fr; }
`;

let hostSheet = null;

export function shadowRoot(host) {
  if (host.shadowRoot) return host.shadowRoot;
  const root = host.attachShadow({ mode: "open" });
  if (!hostSheet) {
    hostSheet = new CSSStyleSheet();
    hostSheet.replaceSync(HOST_CSS);
  }
  root.adoptedStyleSheets = [...root.adoptedStyleSheets, hostSheet];
  return root;
}

export function container(host, className) {
  const root = shadowRoot(host);
  const box = document.createElement("div");
  box.className = className;
  root.appendChild(box);
  return { root, box };
}
