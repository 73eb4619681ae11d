// The console's charts: every element with [data-chart] draws the spec its data-spec names.
//
//   <div id="stages" class="chart" data-chart data-spec="stages-spec"></div>
//   <script type="application/json" id="stages-spec">{"kind": "bar", "categories": [...], ...}</script>
//
// Templates only embed JSON (no inline script, no inline style), so pages keep a strict CSP.
// Charts are drawn on DOMContentLoaded and on htmx:load (new content), resized with their
// element, and disposed when their element leaves the page. After drawing, el.dataset.rendered
// is "true" ("error" with el.dataset.error when the spec is wrong), and
// window.consoleCharts[el.id] = {kind, spec} holds the numbers behind it, for browser tests.
import { BarChart, FunnelChart, HeatmapChart, LineChart, PieChart } from "echarts/charts";
import {
  DataZoomComponent,
  GridComponent,
  LegendComponent,
  MarkLineComponent,
  TitleComponent,
  TooltipComponent,
  VisualMapComponent,
} from "echarts/components";
import * as echarts from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";
import { BUILDERS } from "./options.js";
import { readTheme } from "./theme.js";

echarts.use([
  BarChart,
  LineChart,
  PieChart,
  HeatmapChart,
  FunnelChart,
  GridComponent,
  TooltipComponent,
  LegendComponent,
  VisualMapComponent,
  MarkLineComponent,
  DataZoomComponent,
  TitleComponent,
  CanvasRenderer,
]);

const instances = new Map(); // element -> ECharts instance
const registry = (window.consoleCharts = window.consoleCharts || {});
const owners = new Map(); // registry key -> the element that wrote it (a swapped-in twin may share its id)
const resizer =
  typeof ResizeObserver === "function"
    ? new ResizeObserver((entries) => {
        for (const entry of entries) instances.get(entry.target)?.resize();
      })
    : null;

function keyOf(el) {
  return el.id || el.dataset.spec;
}

function readSpec(el) {
  const id = el.dataset.spec;
  const script = id ? document.getElementById(id) : null;
  if (!script) throw new Error(`no <script type="application/json" id="${id}"> holds this chart's spec`);
  const spec = JSON.parse(script.textContent);
  if (!BUILDERS[spec.kind]) throw new Error(`unknown chart kind ${JSON.stringify(spec.kind)}`);
  return spec;
}

/** Give an element without a height from the stylesheet a usable one (ECharts cannot draw into 0 px). */
function ensureSize(el, kind) {
  if (kind === "sparkline" && window.getComputedStyle(el).display === "inline") el.style.display = "inline-block";
  if (!el.clientHeight) el.style.height = kind === "sparkline" ? "2rem" : "20rem";
  if (!el.clientWidth && kind === "sparkline") el.style.width = "8rem";
}

/** Follow a heatmap's cell_link ("...?from={y}&to={x}") with the clicked cell's labels, same-origin http(s) only. */
function linkCells(chart, spec) {
  chart.on("click", (params) => {
    if (params.componentType !== "series" || !Array.isArray(params.value)) return;
    const [xi, yi] = params.value;
    const url = new URL(
      spec.cell_link.replaceAll("{x}", encodeURIComponent(spec.x[xi])).replaceAll("{y}", encodeURIComponent(spec.y[yi])),
      window.location.href,
    );
    if (url.origin === window.location.origin) window.location.assign(url.href);
  });
}

function reducedMotion() {
  return window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
}

/** Draw one chart element (once; a drawn element is left alone). */
export function render(el) {
  if (instances.has(el)) return;
  let spec;
  try {
    spec = readSpec(el);
    const theme = readTheme(el);
    const option = BUILDERS[spec.kind](spec, theme);
    ensureSize(el, spec.kind);
    const chart = echarts.init(el, null, { renderer: "canvas" });
    chart.setOption({
      animation: !reducedMotion(),
      color: theme.palette,
      textStyle: { color: theme.text },
      ...option,
    });
    if (spec.kind === "heatmap" && spec.cell_link) linkCells(chart, spec);
    instances.set(el, chart);
    resizer?.observe(el);
  } catch (error) {
    el.dataset.rendered = "error";
    el.dataset.error = String(error?.message || error);
    el.textContent = "This chart could not be drawn.";
    console.error(`chart ${keyOf(el)}:`, error);
    return;
  }
  if (isEmpty(spec)) el.dataset.empty = "true";
  el.dataset.rendered = "true";
  registry[keyOf(el)] = { kind: spec.kind, spec };
  owners.set(keyOf(el), el);
}

/** Tell whether a spec has nothing to draw (the chart then says so instead of showing an empty frame). */
function isEmpty(spec) {
  const data = {
    bar: spec.categories,
    line: spec.categories,
    pie: spec.items,
    heatmap: spec.cells,
    histogram: spec.bins,
    funnel: spec.stages,
    sparkline: spec.values,
  }[spec.kind];
  return !data || data.length === 0;
}

/** Draw every chart element in root (root itself included). */
export function renderAll(root = document) {
  if (root instanceof Element && root.matches("[data-chart]")) render(root);
  for (const el of root.querySelectorAll("[data-chart]")) render(el);
}

/** Dispose the charts whose elements have left the page. */
export function sweep() {
  for (const [el, chart] of instances) {
    if (el.isConnected) continue;
    chart.dispose();
    instances.delete(el);
    resizer?.unobserve(el);
    const key = keyOf(el);
    if (owners.get(key) === el) {
      owners.delete(key);
      delete registry[key];
    }
  }
}

let resizePending = false;
window.addEventListener("resize", () => {
  if (resizePending) return;
  resizePending = true;
  window.requestAnimationFrame(() => {
    resizePending = false;
    for (const chart of instances.values()) chart.resize();
  });
});

new MutationObserver((mutations) => {
  if (instances.size && mutations.some((m) => m.removedNodes.length)) sweep();
}).observe(document.documentElement, { childList: true, subtree: true });

document.addEventListener("htmx:load", (event) => renderAll(event.target));
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => renderAll());
else renderAll();

window.ConsoleCharts = { render, renderAll, sweep, instances };
