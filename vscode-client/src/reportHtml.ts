// HTML of the wafer-report webview, from the `waferline/simulate` reply. Pure (unit-tested).
// The report's exact fields belong to runtime/wafer and may grow, so it is rendered by shape:
// scalars as a key/value table, each nested object as its own table, each list of objects as a
// table with one column per key. No script runs in the page (CSP allows images and inline style only).

export interface SimulateResult {
  report: unknown;
  plot_path: string | null;
  /** The explore sweep's chart: which public models reach 1,000 tok/s per user on this hardware (older servers: absent). */
  explore_plot_path?: string | null;
}

export interface ReportPage {
  title: string;
  result: SimulateResult;
  /** Webview URI of the plot (webview.asWebviewUri), or undefined when there is none. */
  plotUri?: string;
  /** Webview URI of the explore chart, or undefined. */
  exploreUri?: string;
  /** webview.cspSource. */
  cspSource: string;
}

export function escapeHtml(value: string): string {
  return value
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** "wafer_tokens_per_s" -> "wafer tokens per s"; keeps units readable without a field table. */
export function humanKey(key: string): string {
  return key.replace(/_/g, " ");
}

export function formatValue(value: unknown): string {
  if (value === null || value === undefined) {
    return "–";
  }
  if (typeof value === "number") {
    if (Number.isInteger(value)) {
      return value.toLocaleString("en-US");
    }
    const abs = Math.abs(value);
    return abs !== 0 && (abs < 1e-3 || abs >= 1e7) ? value.toExponential(3) : String(Number(value.toPrecision(4)));
  }
  if (typeof value === "string" || typeof value === "boolean") {
    return String(value);
  }
  if (Array.isArray(value) && value.every((v) => typeof v !== "object" || v === null)) {
    return value.map(formatValue).join(", ");
  }
  return JSON.stringify(value);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function keyValueTable(entries: [string, unknown][]): string {
  const rows = entries
    .map(([k, v]) => `<tr><th>${escapeHtml(humanKey(k))}</th><td>${escapeHtml(formatValue(v))}</td></tr>`)
    .join("");
  return `<table class="kv">${rows}</table>`;
}

function recordsTable(records: Record<string, unknown>[], maxRows: number): string {
  const columns: string[] = [];
  for (const record of records) {
    for (const key of Object.keys(record)) {
      if (!columns.includes(key)) {
        columns.push(key);
      }
    }
  }
  const head = columns.map((c) => `<th>${escapeHtml(humanKey(c))}</th>`).join("");
  const shown = records.slice(0, maxRows);
  const body = shown
    .map((r) => `<tr>${columns.map((c) => `<td>${escapeHtml(formatValue(r[c]))}</td>`).join("")}</tr>`)
    .join("");
  const more =
    records.length > maxRows
      ? `<p class="more">${records.length - maxRows} more rows not shown (see the JSON below).</p>`
      : "";
  return `<table class="records"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>${more}`;
}

/** Sections of an object: its scalars first, then one section per nested object or list of objects. */
export function renderSections(name: string, value: Record<string, unknown>, depth = 2, maxRows = 200): string {
  const scalars: [string, unknown][] = [];
  const nested: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    if (isPlainObject(v) && depth < 4) {
      nested.push(renderSections(key, v, depth + 1, maxRows));
    } else if (Array.isArray(v) && v.length > 0 && v.every(isPlainObject)) {
      nested.push(`<h${depth + 1}>${escapeHtml(humanKey(key))}</h${depth + 1}>${recordsTable(v, maxRows)}`);
    } else {
      scalars.push([key, v]);
    }
  }
  const heading = `<h${depth}>${escapeHtml(humanKey(name))}</h${depth}>`;
  return heading + (scalars.length ? keyValueTable(scalars) : "") + nested.join("");
}

export function renderReportHtml(page: ReportPage): string {
  const { result } = page;
  const csp = [
    "default-src 'none'",
    `img-src ${page.cspSource} data:`,
    "style-src 'unsafe-inline'",
  ].join("; ");
  const plot = page.plotUri
    ? `<img class="plot" src="${escapeHtml(page.plotUri)}" alt="Wafer heat-map and latency breakdown">`
    : `<p class="none">The server returned no plot (matplotlib missing, or plotting failed; see the Waferline output).</p>`;
  const chart = page.exploreUri
    ? `<h2>Which models reach 1,000 tok/s per user on this hardware</h2>
<img class="explore" src="${escapeHtml(page.exploreUri)}" alt="Decode tok/s per user against active parameters, 1 and 4 wafers">`
    : "";
  const body = isPlainObject(result.report)
    ? renderSections("Report", result.report)
    : `<p class="none">The report is empty.</p>`;
  const json = escapeHtml(JSON.stringify(result.report, null, 2) ?? "null");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>${escapeHtml(page.title)}</title>
<style>
  body { font-family: var(--vscode-font-family); color: var(--vscode-foreground); padding: 0 1em 2em; }
  img.plot, img.explore { max-width: 100%; background: white; border: 1px solid var(--vscode-panel-border); }
  table { border-collapse: collapse; margin: 0.5em 0 1em; }
  th, td { border: 1px solid var(--vscode-panel-border); padding: 2px 8px; text-align: left; }
  td { font-variant-numeric: tabular-nums; }
  table.kv th { font-weight: normal; opacity: 0.8; }
  p.none, p.more { opacity: 0.8; font-style: italic; }
  details pre { font-size: 0.85em; overflow-x: auto; }
</style>
</head>
<body>
<h1>${escapeHtml(page.title)}</h1>
${plot}
${chart}
${body}
<details><summary>Report JSON</summary><pre>${json}</pre></details>
</body>
</html>`;
}
