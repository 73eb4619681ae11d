// Colours and number formats of the console's charts.
//
// Colours come from CSS custom properties, so the stylesheet (and a dark theme) decides them:
// --chart-1 ... --chart-8 (series), --chart-text, --chart-muted (axis labels), --chart-grid,
// --chart-mark (histogram marks), --chart-heat-low / --chart-heat-mid / --chart-heat-high.
// A property the stylesheet does not set falls back to the fixed palette below.

// A colour-blind-friendly categorical palette (blue, orange, green, red, purple, cyan, pink, olive).
const PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

const DEFAULTS = {
  text: "#1f2937",
  muted: "#6b7280",
  grid: "#e5e7eb",
  mark: "#b91c1c",
  heatLow: "#eff6ff",
  heatMid: "#60a5fa",
  heatHigh: "#1e3a8a",
};

/** Read the chart colours that apply to `el` from its computed CSS custom properties. */
export function readTheme(el) {
  const style = window.getComputedStyle(el);
  const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
  return {
    palette: PALETTE.map((colour, i) => read(`--chart-${i + 1}`, colour)),
    text: read("--chart-text", DEFAULTS.text),
    muted: read("--chart-muted", DEFAULTS.muted),
    grid: read("--chart-grid", DEFAULTS.grid),
    mark: read("--chart-mark", DEFAULTS.mark),
    heat: [
      read("--chart-heat-low", DEFAULTS.heatLow),
      read("--chart-heat-mid", DEFAULTS.heatMid),
      read("--chart-heat-high", DEFAULTS.heatHigh),
    ],
  };
}

function locale() {
  return document.documentElement.lang || undefined;
}

/**
 * Return the formatter of a spec's values: spec.format is "number" (the default), "integer",
 * "percent" (values are fractions: 0.25 shows as 25%) or "currency" (spec.currency, default EUR).
 */
export function valueFormatter(spec) {
  const options = {
    number: { maximumFractionDigits: 2 },
    integer: { maximumFractionDigits: 0 },
    percent: { style: "percent", maximumFractionDigits: 1 },
    currency: { style: "currency", currency: spec.currency || "EUR", maximumFractionDigits: 0 },
  }[spec.format || "number"];
  if (!options) throw new Error(`unknown format ${JSON.stringify(spec.format)}`);
  const format = new Intl.NumberFormat(locale(), options);
  return (value) => (value === null || value === undefined || Number.isNaN(value) ? "–" : format.format(value));
}

/** Return the short formatter of axis ticks (12k, 1.2M; percentages as for the values). */
export function axisFormatter(spec) {
  if (spec.format === "percent") return valueFormatter(spec);
  const compact = new Intl.NumberFormat(locale(), { notation: "compact", maximumFractionDigits: 1 });
  return (value) => compact.format(value);
}
