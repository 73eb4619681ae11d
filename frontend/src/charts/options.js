// One function per chart kind: a spec (the JSON a page embeds) and the theme in, an ECharts option out.
//
// Tooltips use renderMode "richText" (drawn on the canvas): ECharts' HTML tooltips write inline
// style attributes, which a strict Content-Security-Policy (style-src without 'unsafe-inline') blocks.

import { axisFormatter, valueFormatter } from "./theme.js";

const EMPTY_TEXT = "No data yet";

function tooltip(extra) {
  return { renderMode: "richText", confine: true, ...extra };
}

function axisStyle(theme) {
  return {
    axisLine: { lineStyle: { color: theme.grid } },
    axisTick: { lineStyle: { color: theme.grid } },
    axisLabel: { color: theme.muted, hideOverlap: true },
    splitLine: { lineStyle: { color: theme.grid } },
    nameTextStyle: { color: theme.muted },
  };
}

/** Show a muted "no data" text in the middle of an empty chart instead of an empty frame. */
function empty(spec, theme) {
  return {
    title: {
      text: spec.empty_text || EMPTY_TEXT,
      left: "center",
      top: "middle",
      textStyle: { color: theme.muted, fontSize: 14, fontWeight: "normal" },
    },
  };
}

function title(spec, theme) {
  return spec.title ? { title: { text: spec.title, left: 0, top: 0, textStyle: { color: theme.text, fontSize: 14 } } } : {};
}

function zoom(count) {
  return count > 40 ? { dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 4 }] } : {};
}

function gridFor(spec, legend, count) {
  const top = (spec.title ? 28 : 8) + (legend ? 28 : 0) + (spec.y_name ? 16 : 0);
  return { left: 8, right: 16, top, bottom: count > 40 ? 36 : 8, outerBoundsMode: "same" };
}

/** Bars and lines: {categories, series:[{name, values}], stacked?, horizontal? (bars only), area? (lines only)}. */
function cartesian(type) {
  return (spec, theme) => {
    const categories = spec.categories || [];
    const series = spec.series || [];
    if (!categories.length || !series.length) return empty(spec, theme);
    const format = valueFormatter(spec);
    const legend = series.length > 1;
    const category = {
      type: "category",
      data: categories,
      name: spec.x_name,
      boundaryGap: type === "bar",
      ...axisStyle(theme),
    };
    const value = {
      type: "value",
      name: spec.y_name,
      ...axisStyle(theme),
      axisLabel: { ...axisStyle(theme).axisLabel, formatter: axisFormatter(spec) },
    };
    const horizontal = type === "bar" && spec.horizontal;
    return {
      ...title(spec, theme),
      tooltip: tooltip({ trigger: "axis", axisPointer: { type: type === "bar" ? "shadow" : "line" }, valueFormatter: format }),
      legend: { show: legend, top: spec.title ? 24 : 0, textStyle: { color: theme.text } },
      grid: gridFor(spec, legend, horizontal ? 0 : categories.length),
      xAxis: horizontal ? value : category,
      yAxis: horizontal ? { ...category, inverse: true } : value,
      ...(horizontal ? {} : zoom(categories.length)),
      series: series.map((s) => ({
        type,
        name: s.name,
        data: s.values,
        stack: spec.stacked ? "total" : undefined,
        emphasis: { focus: "series" },
        ...(type === "line" ? { showSymbol: categories.length <= 40, areaStyle: spec.area ? { opacity: 0.15 } : undefined } : {}),
      })),
    };
  };
}

/** Pie (a donut): {items:[{name, value}]}. */
function pie(spec, theme) {
  const items = spec.items || [];
  if (!items.length) return empty(spec, theme);
  const format = valueFormatter(spec);
  return {
    ...title(spec, theme),
    tooltip: tooltip({ trigger: "item", formatter: (p) => `${p.name}: ${format(p.value)} (${p.percent}%)` }),
    legend: { show: false },
    series: [
      {
        type: "pie",
        radius: ["35%", "60%"],
        center: ["50%", spec.title ? "55%" : "50%"],
        data: items,
        label: { color: theme.text, formatter: (p) => `${p.name}: ${format(p.value)}` },
      },
    ],
  };
}

/** Heatmap: {x:[labels], y:[labels], cells:[[xi, yi, value]], cell_link?, x_name?, y_name?}; y runs top to bottom. */
function heatmap(spec, theme) {
  const x = spec.x || [];
  const y = spec.y || [];
  const cells = spec.cells || [];
  if (!x.length || !y.length) return empty(spec, theme);
  const format = valueFormatter(spec);
  const max = cells.reduce((m, c) => Math.max(m, c[2]), 0);
  const style = axisStyle(theme);
  const category = (data, name) => ({ type: "category", data, name, splitArea: { show: true }, ...style, axisLabel: { ...style.axisLabel, hideOverlap: false } });
  return {
    ...title(spec, theme),
    tooltip: tooltip({
      trigger: "item",
      formatter: (p) => `${spec.y_name || "y"}: ${y[p.value[1]]}\n${spec.x_name || "x"}: ${x[p.value[0]]}\n${format(p.value[2])}`,
    }),
    grid: { left: 8, right: 16, top: (spec.title ? 28 : 8) + (spec.x_name ? 20 : 0), bottom: 40, outerBoundsMode: "same" },
    xAxis: { ...category(x, spec.x_name), position: "top", nameLocation: "middle", nameGap: 28 },
    yAxis: { ...category(y, spec.y_name), inverse: true, nameLocation: "middle", nameGap: 64 },
    visualMap: {
      min: 0,
      max: max || 1,
      calculable: false,
      text: [format(max), format(0)],
      orient: "horizontal",
      left: "center",
      bottom: 4,
      itemWidth: 12,
      itemHeight: 120,
      inRange: { color: theme.heat },
      textStyle: { color: theme.muted },
      formatter: (v) => format(v),
    },
    series: [
      {
        type: "heatmap",
        data: cells,
        cursor: spec.cell_link ? "pointer" : "default",
        label: { show: cells.length <= 200, formatter: (p) => format(p.value[2]) },
        emphasis: { itemStyle: { borderColor: theme.text, borderWidth: 1 } },
      },
    ],
  };
}

/** Histogram: {bins:[{lo, hi, count}], marks:[{value, label}]}: bars on a value axis, marks as vertical lines. */
function histogram(spec, theme) {
  const bins = spec.bins || [];
  if (!bins.length) return empty(spec, theme);
  const format = valueFormatter({ format: "integer" });
  const edge = valueFormatter(spec);
  const style = axisStyle(theme);
  const marks = (spec.marks || []).map((m) => ({ xAxis: m.value, name: m.label }));
  return {
    ...title(spec, theme),
    tooltip: tooltip({
      trigger: "item",
      formatter: (p) => (p.componentType === "markLine" ? `${p.name}: ${edge(p.value)}` : `${edge(p.value[2])} – ${edge(p.value[3])}\n${format(p.value[1])}`),
    }),
    grid: gridFor(spec, false, 0),
    xAxis: {
      type: "value",
      min: bins[0].lo,
      max: bins[bins.length - 1].hi,
      name: spec.x_name,
      ...style,
      splitLine: { show: false },
      axisLabel: { ...style.axisLabel, formatter: axisFormatter(spec) },
    },
    yAxis: { type: "value", name: spec.y_name, ...style, axisLabel: { ...style.axisLabel, formatter: axisFormatter({}) } },
    series: [
      {
        type: "bar",
        barWidth: "96%",
        data: bins.map((b) => [(b.lo + b.hi) / 2, b.count, b.lo, b.hi]),
        encode: { x: 0, y: 1 },
        markLine: {
          symbol: "none",
          silent: false,
          lineStyle: { color: theme.mark, type: "dashed", width: 2 },
          label: { color: theme.mark, formatter: (p) => p.name, position: "insideEndTop" },
          data: marks,
        },
      },
    ],
  };
}

/** Funnel: {stages:[{name, value}]} in the order given; the tooltip tells the share of the first and previous stage. */
function funnel(spec, theme) {
  const stages = spec.stages || [];
  if (!stages.length) return empty(spec, theme);
  const format = valueFormatter(spec);
  const share = valueFormatter({ format: "percent" });
  const first = stages[0].value;
  return {
    ...title(spec, theme),
    tooltip: tooltip({
      trigger: "item",
      formatter: (p) => {
        const previous = p.dataIndex > 0 ? stages[p.dataIndex - 1].value : null;
        const lines = [`${p.name}: ${format(p.value)}`, `of ${stages[0].name}: ${first ? share(p.value / first) : "–"}`];
        if (previous !== null) lines.push(`of ${stages[p.dataIndex - 1].name}: ${previous ? share(p.value / previous) : "–"}`);
        return lines.join("\n");
      },
    }),
    series: [
      {
        type: "funnel",
        sort: "none",
        left: "4%",
        width: "56%",
        top: spec.title ? 32 : 8,
        bottom: 8,
        min: 0,
        max: Math.max(...stages.map((s) => s.value), 1),
        gap: 2,
        data: stages,
        label: {
          position: "right",
          color: theme.text,
          formatter: (p) => `${p.name}: ${format(p.value)}${p.dataIndex ? ` (${first ? share(p.value / first) : "–"})` : ""}`,
        },
        labelLine: { lineStyle: { color: theme.grid } },
      },
    ],
  };
}

/** Sparkline: {values:[...]}: a tiny line with no axes, for tables. */
function sparkline(spec, theme) {
  const values = spec.values || [];
  return {
    grid: { left: 1, right: 1, top: 2, bottom: 2 },
    xAxis: { type: "category", show: false, boundaryGap: false, data: values.map((_, i) => i) },
    yAxis: { type: "value", show: false, scale: true },
    tooltip: tooltip({ trigger: "axis", valueFormatter: valueFormatter(spec), axisPointer: { type: "none" } }),
    series: [{ type: "line", data: values, showSymbol: false, lineStyle: { width: 1.5 }, areaStyle: { opacity: 0.1 } }],
    color: [theme.palette[0]],
  };
}

/** The option builder of each chart kind. */
export const BUILDERS = { bar: cartesian("bar"), line: cartesian("line"), pie, heatmap, histogram, funnel, sparkline };
