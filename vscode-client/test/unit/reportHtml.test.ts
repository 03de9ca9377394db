import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { escapeHtml, formatValue, renderReportHtml } from "../../src/reportHtml";

const report = {
  model: "smollm2-135m",
  hardware: "wse3",
  decode_ms_per_token: 0.0412,
  wafer_tokens_per_s: 24271.8,
  pes_used: 712345,
  breakdown: { compute_ms: 0.011, collectives_ms: 0.02, hops_ms: 0.0102 },
  regions: [
    { name: "layers.0/attn", pes: 1200, sram_bytes: 1.5e6 },
    { name: "layers.0/mlp", pes: 2400, sram_bytes: 3.1e6, note: "<b>" },
  ],
};

describe("renderReportHtml", () => {
  const html = renderReportHtml({
    title: "Wafer report — wse3",
    result: { report, plot_path: "/tmp/plot.png" },
    plotUri: "https://file+.vscode-resource.vscode-cdn.net/tmp/plot.png",
    cspSource: "https://*.vscode-cdn.net",
  });

  it("shows the plot through the webview URI, allowed by the CSP", () => {
    assert.match(html, /<img class="plot" src="https:\/\/file\+\.vscode-resource\.vscode-cdn\.net\/tmp\/plot\.png"/);
    assert.match(html, /img-src https:\/\/\*\.vscode-cdn\.net data:/);
  });

  it("runs no script", () => {
    assert.doesNotMatch(html, /<script/i);
    assert.match(html, /default-src 'none'/);
  });

  it("tabulates scalars, nested objects and lists of objects", () => {
    assert.match(html, /<th>decode ms per token<\/th><td>0\.0412<\/td>/);
    assert.match(html, /<th>pes used<\/th><td>712,345<\/td>/);
    assert.match(html, /<h3>breakdown<\/h3><table class="kv"><tr><th>compute ms<\/th><td>0\.011<\/td>/);
    assert.match(html, /<thead><tr><th>name<\/th><th>pes<\/th><th>sram bytes<\/th><th>note<\/th><\/tr><\/thead>/);
    assert.match(html, /<td>layers\.0\/mlp<\/td><td>2,400<\/td><td>3,100,000<\/td><td>&lt;b&gt;<\/td>/);
  });

  it("says so when there is no plot or no report", () => {
    const bare = renderReportHtml({ title: "t", result: { report: null, plot_path: null }, cspSource: "x" });
    assert.match(bare, /returned no plot/);
    assert.match(bare, /report is empty/);
    assert.doesNotMatch(bare, /img class="explore"/);
  });

  it("shows the explore chart when the server drew one", () => {
    const withChart = renderReportHtml({
      title: "t",
      result: { report, plot_path: "/tmp/plot.png", explore_plot_path: "/tmp/explore-wse3.png" },
      plotUri: "https://x/plot.png",
      exploreUri: "https://x/explore-wse3.png",
      cspSource: "x",
    });
    assert.match(withChart, /<img class="explore" src="https:\/\/x\/explore-wse3\.png"/);
    assert.match(withChart, /reach 1,000 tok\/s per user/);
  });
});

describe("formatting", () => {
  it("escapes markup", () => {
    assert.equal(escapeHtml(`<a href="x">'&'</a>`), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  });
  it("formats numbers for reading", () => {
    assert.equal(formatValue(1234567), "1,234,567");
    assert.equal(formatValue(0.000012345), "1.234e-5");
    assert.equal(formatValue(3.14159), "3.142");
    assert.equal(formatValue(null), "–");
    assert.equal(formatValue([1, 2]), "1, 2");
    assert.equal(formatValue(true), "true");
  });
});
