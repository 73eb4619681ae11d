// Where an editor lives: a shadow root on its host element.
//
// CodeMirror styles itself at run time through style-mod, which writes a <style> element into a
// document's <head>: the console's CSP (style-src 'self', no 'unsafe-inline', and no nonces) refuses
// that element, and the editor would be unstyled. In a shadow root style-mod uses a constructed
// style sheet (adoptedStyleSheets) instead, which the CSP allows, so every editor and diff view is
// mounted in one. The page's CSS custom properties (colours, radius) still inherit into it.
export function shadowRoot(host) {
  return host.shadowRoot || host.attachShadow({ mode: "open" });
}

export function container(host, className) {
  const root = shadowRoot(host);
  const box = document.createElement("div");
  box.className = className;
  root.appendChild(box);
  return { root, box };
}
