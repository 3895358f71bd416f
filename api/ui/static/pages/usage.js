// Usage: tokens and cost per day or per model for the tenant (GET /usage), as an inline SVG chart.
import { api, errorSlot, formatNumber, guarded, h } from "/ui/lib.js";

const SVG = "http://www.w3.org/2000/svg";
const DAY_MS = 86_400_000;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

const money = (cost) => (cost === null || cost === undefined ? "–" : `$${Number(cost).toFixed(cost < 1 ? 4 : 2)}`);
const dayLabel = (ms) => new Date(ms).toISOString().slice(0, 10);

/** Bars of total tokens per group; each bar's <title> and the table below carry the numbers. */
export function barChart(groups, label, description) {
  const width = 760;
  const height = 300;
  const pad = { left: 64, right: 12, top: 12, bottom: 96 };
  const top = Math.max(1, ...groups.map((g) => g.total_tokens));
  const slot = (width - pad.left - pad.right) / Math.max(groups.length, 1);
  const barWidth = Math.max(4, Math.min(48, slot * 0.7));
  const y = (value) => pad.top + (height - pad.top - pad.bottom) * (1 - value / top);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": description });
  for (const fraction of [0, 0.5, 1]) {
    chart.append(svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: y(top * fraction), y2: y(top * fraction) }),
      svg("text", { x: pad.left - 6, y: y(top * fraction) + 4, "text-anchor": "end" }, formatNumber(top * fraction)));
  }
  groups.forEach((group, index) => {
    const x = pad.left + slot * index + (slot - barWidth) / 2;
    const name = label(group);
    chart.append(svg("rect", { class: "bar", x, y: y(group.total_tokens), width: barWidth,
      height: Math.max(0, height - pad.bottom - y(group.total_tokens)) },
    svg("title", {}, `${name}: ${formatNumber(group.total_tokens)} tokens, ${money(group.cost)}, ${group.calls} call(s)`)));
    const text = name.length > 18 ? `${name.slice(0, 17)}…` : name;
    chart.append(svg("text", { x: x + barWidth / 2, y: height - pad.bottom + 14, "text-anchor": "end",
      transform: `rotate(-35 ${x + barWidth / 2} ${height - pad.bottom + 14})` }, text));
  });
  return chart;
}

export async function render(main) {
  document.title = "Usage · Ragline";
  const groupBy = h("select", { id: "group-by" }, h("option", { value: "day" }, "Day"), h("option", { value: "model" }, "Model"));
  const span = h("select", { id: "span" }, [7, 30, 90, 365].map((days) => h("option", { value: days, selected: days === 30 }, `Last ${days} days`)));
  const slot = errorSlot();
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "row" },
    h("div", {}, h("label", { for: "group-by", text: "Group by" }), groupBy),
    h("div", {}, h("label", { for: "span", text: "Period" }), span),
    h("button", { type: "submit", text: "Show" }));

  async function load() {
    const to = Date.now();
    const from = to - Number(span.value) * DAY_MS;
    const data = await api("GET", "/usage", { query: { group_by: groupBy.value, from, to } });
    let groups = data.groups;
    const byDay = data.group_by === "day";
    if (byDay) { // every day of the period, the quiet ones at zero, so the chart reads as a timeline
      const seen = new Map(groups.map((g) => [dayLabel(g.day), g]));
      groups = [];
      for (let day = Math.floor(from / DAY_MS) * DAY_MS; day < to; day += DAY_MS) {
        groups.push(seen.get(dayLabel(day)) || { day, calls: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost: 0 });
      }
    }
    const label = (g) => (byDay ? dayLabel(g.day) : (g.model || "(unknown)"));
    const total = data.total;
    out.replaceChildren(
      h("div", { class: "stats" },
        h("div", {}, "Calls", h("strong", { text: formatNumber(total.calls) })),
        h("div", {}, "Prompt tokens", h("strong", { text: formatNumber(total.prompt_tokens) })),
        h("div", {}, "Completion tokens", h("strong", { text: formatNumber(total.completion_tokens) })),
        h("div", {}, "Cost", h("strong", { text: money(total.cost) }))),
      ...(total.calls_without_price ? [h("p", { class: "hint", text: `${total.calls_without_price} call(s) used a model without a known price; their cost is not counted.` })] : []),
      h("figure", { class: "chart" },
        barChart(groups, label, `Total tokens per ${byDay ? "day" : "model"}: ${groups.filter((g) => g.total_tokens).length} group(s) with usage, ${formatNumber(total.total_tokens)} tokens in all.`),
        h("figcaption", { class: "hint", text: `Total tokens per ${byDay ? "day" : "model"}; hover a bar for its numbers.` })),
      h("div", { class: "table-wrap" }, h("table", { id: "usage-table" },
        h("thead", {}, h("tr", {}, [byDay ? "Day" : "Model", "Calls", "Prompt tokens", "Completion tokens", "Total tokens", "Cost"]
          .map((text, i) => h("th", { scope: "col", class: i ? "num" : null, text })))),
        h("tbody", {}, data.groups.length ? data.groups.map((g) => h("tr", {},
          h("td", { text: label(g) }), h("td", { class: "num", text: formatNumber(g.calls) }),
          h("td", { class: "num", text: formatNumber(g.prompt_tokens) }), h("td", { class: "num", text: formatNumber(g.completion_tokens) }),
          h("td", { class: "num", text: formatNumber(g.total_tokens) }), h("td", { class: "num", text: money(g.cost) })))
          : h("tr", {}, h("td", { colspan: 6, class: "muted", text: "No model call in this period." }))))));
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); guarded(slot, form.querySelector("button"), load); });
  main.append(h("h1", { text: "Usage" }), h("p", { class: "muted", text: "Tokens and cost of this tenant's model calls (chat and embeddings)." }), form, slot, out);
  await guarded(slot, null, load);
}
